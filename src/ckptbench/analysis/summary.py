"""Per checkpoint × scorer summaries: mean with a cluster-bootstrap CI, seed and pooled spread."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from ckptbench.analysis.bootstrap import cluster_bootstrap_means, percentile_interval, stable_rng


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
        data["ci95"] = list(self.ci95)
        return {key: (None if isinstance(value, float) and not np.isfinite(value) else value)
                for key, value in data.items()}


def prompt_seed_matrix(values: pd.DataFrame) -> np.ndarray:
    """Rows = prompts (suite, case), columns = seeds; NaN where an image or score is missing."""
    table = values.pivot_table(index=["suite", "case_id"], columns="seed", values="value", aggfunc="mean",
                               dropna=False)
    return table.to_numpy(dtype=np.float64)


def seed_std(matrix: np.ndarray) -> float:
    counts = np.isfinite(matrix).sum(axis=1)
    usable = matrix[counts >= 2]
    if len(usable) == 0:
        return float("nan")
    return float(np.mean(np.nanstd(usable, axis=1, ddof=1)))


def summarize_cell(values: pd.DataFrame, resamples: int, seed: int, labels: tuple[str, ...]) -> ScoreSummary:
    matrix = prompt_seed_matrix(values)
    finite = matrix[np.isfinite(matrix)]
    if finite.size == 0:
        return ScoreSummary(float("nan"), (float("nan"), float("nan")), float("nan"), float("nan"), 0,
                            int(values["value"].isna().sum()))
    samples = cluster_bootstrap_means(matrix, resamples, stable_rng(seed, *labels))
    return ScoreSummary(
        mean=float(finite.mean()),
        ci95=percentile_interval(samples),
        seed_std=seed_std(matrix),
        pooled_std=float(np.std(finite, ddof=1)) if finite.size > 1 else float("nan"),
        n=int(finite.size),
        missing=int(values["value"].isna().sum()),
    )


def summarize(frame: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> dict[str, dict[str, ScoreSummary]]:
    """checkpoint → scorer → summary over all of the checkpoint's images."""
    result: dict[str, dict[str, ScoreSummary]] = {}
    for (checkpoint, scorer), values in frame.groupby(["checkpoint", "scorer"], sort=False):
        result.setdefault(str(checkpoint), {})[str(scorer)] = summarize_cell(
            values, resamples, seed, (str(checkpoint), str(scorer)))
    return result
