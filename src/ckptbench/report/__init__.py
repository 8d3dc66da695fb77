"""The report (HTML) and the exports (results.json, scores.csv) written at the end of every run."""
