from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ckptbench.analysis.bootstrap import cluster_bootstrap_means, percentile_interval, stable_rng
from ckptbench.analysis.summary import seed_std, summarize


def _reference_bootstrap(matrix: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """Slow, loop-by-loop version drawing the same random numbers in the same order."""
    rows = [row[np.isfinite(row)] for row in matrix if np.isfinite(row).any()]
    width = matrix.shape[1]
    rng = np.random.default_rng(seed)
    prompt_draw = rng.integers(0, len(rows), size=(resamples, len(rows)))
    uniforms = rng.random((resamples, len(rows), width))
    means = []
    for b in range(resamples):
        values = []
        for p in range(len(rows)):
            row = rows[prompt_draw[b, p]]
            for j in range(len(row)):
                values.append(row[int(np.floor(uniforms[b, p, j] * len(row)))])
        means.append(np.mean(values))
    return np.array(means)


def test_vectorised_bootstrap_equals_the_loop_on_an_unbalanced_design() -> None:
    matrix = np.array([[1.0, 2.0, 3.0, np.nan], [10.0, np.nan, 12.0, 13.0], [5.0, 5.5, 6.0, 6.5],
                       [np.nan, np.nan, np.nan, np.nan]])
    fast = cluster_bootstrap_means(matrix, 200, np.random.default_rng(7))
    slow = _reference_bootstrap(matrix, 200, 7)
    np.testing.assert_allclose(fast, slow, rtol=0, atol=1e-12)


def test_interval_reflects_prompt_variation_not_only_seeds() -> None:
    # No seed variation at all, large prompt variation: the interval must still be wide.
    matrix = np.repeat(np.array([[1.0], [5.0], [9.0], [3.0]]), 8, axis=1)
    low, high = percentile_interval(cluster_bootstrap_means(matrix, 2000, np.random.default_rng(0)))
    assert high - low > 3.0
    constant = np.full((4, 8), 2.5)
    assert percentile_interval(cluster_bootstrap_means(constant, 500, np.random.default_rng(0))) == (2.5, 2.5)


def test_seed_std_is_mean_within_prompt_sd() -> None:
    matrix = np.array([[1.0, 3.0], [10.0, 14.0], [7.0, np.nan]])
    # Prompts with a single value cannot show seed variation and are left out.
    assert seed_std(matrix) == pytest.approx((np.std([1, 3], ddof=1) + np.std([10, 14], ddof=1)) / 2)


def _frame(checkpoints: dict[str, float]) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for name, offset in checkpoints.items():
        for case in range(5):
            for seed in range(6):
                rows.append({"checkpoint": name, "suite": "q", "case_id": f"{case:03d}", "seed": seed,
                             "scorer": "s", "value": offset + case * 0.3 + rng.normal()})
    return pd.DataFrame(rows)


def test_adding_a_checkpoint_never_changes_another_ones_summary() -> None:
    pool = _frame({"a": 5.0, "b": 6.0})
    bigger = pd.concat([pool, _frame({"c": 9.0})])
    assert summarize(pool, 500, 0)["a"]["s"] == summarize(bigger, 500, 0)["a"]["s"]


def test_stable_rng_depends_only_on_seed_and_labels() -> None:
    assert stable_rng(0, "a", "s").random() == stable_rng(0, "a", "s").random()
    assert stable_rng(0, "a", "s").random() != stable_rng(1, "a", "s").random()
    assert stable_rng(0, "a", "s").random() != stable_rng(0, "b", "s").random()
