"""Machine-readable outputs of a run, written atomically into the output folder: ``results.json`` (the
whole results document), ``scores.csv`` and ``scores.parquet`` (the tidy score table: one row per
image × scorer) and ``leaderboard.csv`` (the report's leaderboard, one row per checkpoint)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from ckptbench.atomic import atomic_write_bytes, atomic_write_text
from ckptbench.report.leaderboard import Leaderboard

# variant: the sweep variant ("cfg=7"), empty when the run sweeps nothing
SCORE_COLUMNS = ["checkpoint", "suite", "case_id", "prompt", "seed", "scorer", "value", "image", "image_key",
                 "variant"]


def write_results_json(results: dict[str, Any], out: Path) -> Path:
    path = out / "results.json"
    atomic_write_text(path, json.dumps(results, indent=2, sort_keys=False, default=str, allow_nan=False) + "\n")
    return path


def score_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The exported columns of the tidy table; missing scores are left empty, never dropped."""
    table = frame.reindex(columns=SCORE_COLUMNS)
    table["variant"] = table["variant"].fillna("")
    return table


def write_scores_csv(frame: pd.DataFrame, out: Path) -> Path:
    path = out / "scores.csv"
    atomic_write_text(path, score_table(frame).to_csv(index=False))
    return path


def write_scores_parquet(frame: pd.DataFrame, out: Path) -> Path:
    """The same table as scores.csv with its types kept (seed int64, value float64, text as strings)."""
    table = score_table(frame).astype({"checkpoint": "string", "suite": "string", "case_id": "string",
                                       "prompt": "string", "seed": "int64", "scorer": "string", "value": "float64",
                                       "image": "string", "image_key": "string", "variant": "string"})
    buffer = io.BytesIO()
    table.to_parquet(buffer, engine="pyarrow", index=False)
    path = out / "scores.parquet"
    atomic_write_bytes(path, buffer.getvalue())
    return path


def leaderboard_table(board: Leaderboard) -> pd.DataFrame:
    """One row per checkpoint, in ranking order; one group of columns per scorer."""
    records = []
    for row in board.rows:
        record: dict[str, Any] = {"suite": board.suite, "rank": row.rank, "ranked_by": board.by,
                                  "checkpoint": row.checkpoint, "status": row.status,
                                  "in_best_set": row.in_best_set if board.verdict else None}
        if board.composite:
            record.update(composite=row.composite, composite_ci_low=row.composite_ci95[0],
                          composite_ci_high=row.composite_ci95[1], composite_p_rank1=row.p_rank1)
        if board.human:
            record.update(human_theta=row.human_theta, human_ci_low=row.human_ci95[0],
                          human_ci_high=row.human_ci95[1], human_votes=row.human_votes)
        for column in board.scorers:
            cell = row.scores[column.name]
            prefix = column.name
            record.update({
                f"{prefix}_mean": cell.mean, f"{prefix}_ci_low": cell.ci95[0], f"{prefix}_ci_high": cell.ci95[1],
                f"{prefix}_seed_std": cell.seed_std, f"{prefix}_pooled_std": cell.pooled_std, f"{prefix}_n": cell.n,
                f"{prefix}_missing": cell.missing, f"{prefix}_rank": cell.rank,
            })
            if column.threshold is not None:
                record[f"{prefix}_good_rate"] = cell.good_rate
            record[f"{prefix}_vs_next_p_holm"] = cell.vs_next.p_holm if cell.vs_next else None
        record.update(images_ok=row.images_ok, images_planned=row.images_planned, failures=row.failures)
        records.append(record)
    table = pd.DataFrame.from_records(records)
    for column in [c for c in table.columns if c == "rank" or c.endswith(("_rank", "_n", "_missing"))]:
        table[column] = table[column].astype("Int64")  # integers that may be missing
    return table


def write_leaderboard_csv(board: Leaderboard, out: Path) -> Path:
    path = out / "leaderboard.csv"
    atomic_write_text(path, leaderboard_table(board).to_csv(index=False))
    return path
