"""Statistics on the tidy score table (one row per image × scorer)."""
