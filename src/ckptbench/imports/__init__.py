"""Importers of results made by other tools (GhostReview)."""
