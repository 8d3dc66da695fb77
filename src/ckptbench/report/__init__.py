"""The report: the HTML page (leaderboard, seed grids, matrices, charts, failures, provenance) and the
exports (results.json, scores.csv, scores.parquet, leaderboard.csv)."""
