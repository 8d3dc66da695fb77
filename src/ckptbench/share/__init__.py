"""Shareable outputs made from a store: labelled X/Y/Z grid images and image exports with readable names."""
