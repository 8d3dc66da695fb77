"""Coverage of the 95% intervals on data simulated with GhostReview's design: 8 checkpoints × 30 prompts × 32
seeds, with the variance components of the release's LAION scores. The target is the mean over the
population of prompts (a checkpoint's own effect), which is what the docs say the interval is for.

Slow (about 10 s): 4,000 simulated data sets, so that the Monte-Carlo error of the coverage (about 0.0035)
is well inside the ±0.01 band. ``benchmarks/interval_coverage.py`` compares the interval with
the alternatives (percentile bootstrap, BCa, studentised bootstrap) on this design and on skewed ones.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from ckptbench.analysis.intervals import ratio_means, t_interval
from ckptbench.analysis.variance import variance_components

DATA_SETS = 4000
CHUNK = 250


def ghostreview_laion(release: Path) -> np.ndarray:
    """(checkpoints, prompts, seeds) LAION scores read with the csv module from the release."""
    table: dict[str, dict[int, dict[int, float]]] = {}
    for path in sorted((release / "dataresult" / "ImageRatingDataFrame").glob("*.csv")):
        checkpoint, prompt = re.fullmatch(r"(.+)-(\d+)\.csv", path.name).groups()  # type: ignore[union-attr]
        with path.open(newline="") as handle:
            rows = {int(row["ImageIndex"]): float(row["LAIONScore"]) for row in csv.DictReader(handle)}
        table.setdefault(checkpoint, {})[int(prompt)] = rows
    return np.array([[[seeds[s] for s in sorted(seeds)] for _, seeds in sorted(prompts.items())]
                     for _, prompts in sorted(table.items())])


def simulate(rng: np.random.Generator, means: np.ndarray, components: dict[str, float], count: int,
             prompts: int = 30, seeds: int = 32) -> np.ndarray:
    """``count`` data sets of the crossed design: checkpoints fixed (``means``), prompts and seeds random."""
    m = len(means)
    return (means[None, :, None, None]
            + np.sqrt(components["prompt"]) * rng.normal(size=(count, 1, prompts, 1))
            + np.sqrt(components["model_x_prompt"]) * rng.normal(size=(count, m, prompts, 1))
            + np.sqrt(components["seed_shared"]) * rng.normal(size=(count, 1, prompts, seeds))
            + np.sqrt(components["seed_within"]) * rng.normal(size=(count, m, prompts, seeds)))


@pytest.mark.slow
def test_mean_and_difference_intervals_cover_95_percent_on_the_ghostreview_design(shared_data: Path) -> None:
    real = ghostreview_laion(shared_data / "ghostreview")
    assert real.shape == (8, 30, 32)
    estimated = variance_components(real)["components"]
    components = {name: max(float(estimated[name]), 0.0)
                  for name in ("prompt", "model_x_prompt", "seed_shared", "seed_within")}
    assert components["prompt"] == pytest.approx(0.0636, abs=1e-3)  # GhostReview's LAION prompt variance
    means = real.mean(axis=(1, 2))  # any fixed checkpoint effects: coverage does not depend on them
    pairs = [(i, j) for i in range(8) for j in range(i + 1, 8)]
    rng = np.random.default_rng(20240)
    mean_hits, difference_hits = [], []
    for _ in range(DATA_SETS // CHUNK):
        data = simulate(rng, means, components, CHUNK)
        low, high = t_interval(ratio_means(data.reshape(-1, 30, 32)))
        truth = np.tile(means, CHUNK)
        mean_hits.append((low <= truth) & (truth <= high))
        differences = np.stack([data[:, i] - data[:, j] for i, j in pairs], axis=1).reshape(-1, 30, 32)
        low, high = t_interval(ratio_means(differences))
        truth = np.tile([means[i] - means[j] for i, j in pairs], CHUNK)
        difference_hits.append((low <= truth) & (truth <= high))
    mean_coverage = float(np.mean(np.concatenate(mean_hits)))
    difference_coverage = float(np.mean(np.concatenate(difference_hits)))
    print(f"coverage over {DATA_SETS} data sets: means {mean_coverage:.4f}, paired differences "
          f"{difference_coverage:.4f}")
    assert 0.94 <= mean_coverage <= 0.96
    assert 0.94 <= difference_coverage <= 0.96
