"""Per checkpoint × scorer summaries: mean with a cluster-bootstrap CI, seed and pooled spread."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ckptbench.analysis.bootstrap import finite_interval
from ckptbench.analysis.cube import build_cube
from ckptbench.analysis.joint import joint_weights


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


def summarize(frame: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> dict[str, dict[str, ScoreSummary]]:
    """checkpoint → scorer → summary over all of the checkpoint's images, in every suite.

    The interval comes from the joint cluster bootstrap of each suite (``joint.py``), stratified by
    suite: each resample redraws every suite's cases and seeds, and the checkpoint's resampled mean
    pools the suites' resampled sums. The draws depend on the suite, never on the pool of checkpoints.
    """
    parts: dict[tuple[str, str], list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]] = {}
    for suite in (str(s) for s in pd.unique(frame["suite"])):
        cube = build_cube(frame, suite)
        weights = joint_weights(len(cube.cases), len(cube.seeds), resamples, seed, suite)
        for k, scorer in enumerate(cube.scorers):
            flat = cube.values[k].reshape(len(cube.checkpoints), -1)
            present = np.isfinite(flat)
            sums = np.einsum("bc,rc->br", weights, np.where(present, flat, 0.0))
            counts = np.einsum("bc,rc->br", weights, present.astype(np.float64))
            for m, checkpoint in enumerate(cube.checkpoints):
                planned = cube.planned[m]
                if not planned.any():
                    continue
                missing = int((planned & ~np.isfinite(cube.values[k, m])).sum())
                parts.setdefault((checkpoint, scorer), []).append((cube.values[k, m], sums[:, m], counts[:, m],
                                                                   missing))
    result: dict[str, dict[str, ScoreSummary]] = {}
    for (checkpoint, scorer), pieces in parts.items():
        result.setdefault(checkpoint, {})[scorer] = _pooled_summary(pieces)
    return result


def _pooled_summary(pieces: list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]) -> ScoreSummary:
    finite = np.concatenate([matrix[np.isfinite(matrix)] for matrix, _, _, _ in pieces])
    missing = sum(piece[3] for piece in pieces)
    if finite.size == 0:
        return ScoreSummary(float("nan"), (float("nan"), float("nan")), float("nan"), float("nan"), 0, missing)
    row_stds = np.concatenate([_row_stds(matrix) for matrix, _, _, _ in pieces])
    sums = np.sum([piece[1] for piece in pieces], axis=0)
    counts = np.sum([piece[2] for piece in pieces], axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = np.where(counts > 0, sums / counts, np.nan)
    low, high = finite_interval(samples)
    return ScoreSummary(
        mean=float(finite.mean()),
        ci95=(float("nan") if low is None else low, float("nan") if high is None else high),
        seed_std=float(np.mean(row_stds)) if row_stds.size else float("nan"),
        pooled_std=float(np.std(finite, ddof=1)) if finite.size > 1 else float("nan"),
        n=int(finite.size),
        missing=missing,
    )
