"""Machine-readable outputs of a run, written atomically into the store folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from ckptbench.atomic import atomic_write_text

SCORE_COLUMNS = ["checkpoint", "suite", "case_id", "prompt", "seed", "scorer", "value", "image", "image_key"]


def write_results_json(results: dict[str, Any], out: Path) -> Path:
    path = out / "results.json"
    atomic_write_text(path, json.dumps(results, indent=2, sort_keys=False, default=str, allow_nan=False) + "\n")
    return path


def write_scores_csv(frame: pd.DataFrame, out: Path) -> Path:
    """One row per image × scorer; missing scores are left empty, never dropped."""
    path = out / "scores.csv"
    atomic_write_text(path, frame.reindex(columns=SCORE_COLUMNS).to_csv(index=False))
    return path
