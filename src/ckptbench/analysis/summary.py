"""Per checkpoint × scorer summaries: mean with a cluster-t interval, seed and pooled spread."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ckptbench.analysis.cube import build_cube
from ckptbench.analysis.intervals import ratio_means, t_interval


@dataclass(frozen=True)
class ScoreSummary:
    mean: float
    ci95: tuple[float, float]
    seed_std: float  # mean over prompts of the within-prompt SD across seeds (ddof 1): stability
    pooled_std: float  # SD over all of the checkpoint's images (ddof 1): mixes prompt and seed variation
    n: int
    missing: int

    def as_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["ci95"] = [value if np.isfinite(value) else None for value in self.ci95]
        return {key: (None if isinstance(value, float) and not np.isfinite(value) else value)
                for key, value in data.items()}


def prompt_seed_matrix(values: pd.DataFrame) -> np.ndarray:
    """Rows = prompts (suite, case), columns = seeds; NaN where an image or score is missing."""
    # factorize + add.at instead of pivot_table: the same table, an order of magnitude faster.
    rows, _ = pd.MultiIndex.from_arrays([values["suite"], values["case_id"]]).factorize(sort=True)
    columns, _ = pd.factorize(values["seed"], sort=True)
    value = values["value"].to_numpy(dtype=np.float64)
    present = np.isfinite(value)
    shape = (rows.max(initial=-1) + 1, columns.max(initial=-1) + 1)
    sums, counts = np.zeros(shape), np.zeros(shape)
    np.add.at(sums, (rows[present], columns[present]), value[present])
    np.add.at(counts, (rows[present], columns[present]), 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / counts, np.nan)


def seed_std(matrix: np.ndarray) -> float:
    stds = _row_stds(matrix)
    return float(np.mean(stds)) if stds.size else float("nan")


def _row_stds(matrix: np.ndarray) -> np.ndarray:
    """SD across seeds (ddof 1) of every prompt row with at least two values."""
    counts = np.isfinite(matrix).sum(axis=1)
    usable = matrix[counts >= 2]
    return np.nanstd(usable, axis=1, ddof=1) if len(usable) else np.empty(0)


def summarize(frame: pd.DataFrame) -> dict[str, dict[str, ScoreSummary]]:
    """checkpoint → scorer → summary over all of the checkpoint's images, in every suite.

    The interval is the cluster-t interval of ``intervals.py`` with the suites as strata: the pooled mean
    is one ratio mean over every suite's cells, and each suite's cases contribute their own spread. It
    depends on the checkpoint's own values only, never on the pool of checkpoints.
    """
    parts: dict[tuple[str, str], list[tuple[np.ndarray, int]]] = {}
    for suite in (str(s) for s in pd.unique(frame["suite"])):
        cube = build_cube(frame, suite)
        for k, scorer in enumerate(cube.scorers):
            for m, checkpoint in enumerate(cube.checkpoints):
                planned = cube.planned[m]
                if not planned.any():
                    continue
                missing = int((planned & ~np.isfinite(cube.values[k, m])).sum())
                parts.setdefault((checkpoint, scorer), []).append((cube.values[k, m], missing))
    result: dict[str, dict[str, ScoreSummary]] = {}
    for (checkpoint, scorer), pieces in parts.items():
        result.setdefault(checkpoint, {})[scorer] = _pooled_summary(pieces)
    return result


def _pooled_summary(pieces: list[tuple[np.ndarray, int]]) -> ScoreSummary:
    finite = np.concatenate([matrix[np.isfinite(matrix)] for matrix, _ in pieces])
    missing = sum(piece[1] for piece in pieces)
    if finite.size == 0:
        return ScoreSummary(float("nan"), (float("nan"), float("nan")), float("nan"), float("nan"), 0, missing)
    row_stds = np.concatenate([_row_stds(matrix) for matrix, _ in pieces])
    width = max(matrix.shape[1] for matrix, _ in pieces)
    # Suites side by side as one (1, cases of all suites, seeds) array, each suite's cases a stratum.
    stacked = np.concatenate([np.pad(matrix, ((0, 0), (0, width - matrix.shape[1])), constant_values=np.nan)
                              for matrix, _ in pieces])[None]
    strata = np.concatenate([np.full(matrix.shape[0], i) for i, (matrix, _) in enumerate(pieces)])
    low, high = t_interval(ratio_means(stacked, strata))
    return ScoreSummary(
        mean=float(finite.mean()),
        ci95=(float(low[0]), float(high[0])),
        seed_std=float(np.mean(row_stds)) if row_stds.size else float("nan"),
        pooled_std=float(np.std(finite, ddof=1)) if finite.size > 1 else float("nan"),
        n=int(finite.size),
        missing=missing,
    )
