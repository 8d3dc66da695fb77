"""The cluster-t interval (analysis/intervals.py) against scipy's one-sample t on per-case means and against
the cluster-robust sandwich written out term by term; pool independence of the summaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ckptbench.analysis.intervals import (
    p_greater_than_zero,
    ratio_means,
    standard_error,
    t_interval,
    weighted_sum,
)
from ckptbench.analysis.joint import stable_rng
from ckptbench.analysis.summary import seed_std, summarize


def test_balanced_interval_is_scipy_t_interval_of_case_means() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(3, 12, 5)) + rng.normal(size=(1, 12, 1))
    low, high = t_interval(ratio_means(values))
    for row in range(3):
        case_means = values[row].mean(axis=1)
        expected = stats.ttest_1samp(case_means, 0.0).confidence_interval(0.95)
        assert low[row] == pytest.approx(expected.low, rel=1e-12)
        assert high[row] == pytest.approx(expected.high, rel=1e-12)
        greater = stats.ttest_1samp(case_means, 0.0, alternative="greater").pvalue
        assert p_greater_than_zero(ratio_means(values[row][None]))[0] == pytest.approx(greater, rel=1e-10)


def _sandwich(values: np.ndarray) -> tuple[float, float, int]:
    """Mean, cluster-robust SE (CR1 factor G/(G−1)) and G of one (cases, seeds) matrix, from the regression of
    the values on a constant: bread (X'X)⁻¹, meat Σ_g (X_g' u_g)², written out per case."""
    cases = [row[np.isfinite(row)] for row in values]
    cases = [c for c in cases if c.size]
    everything = np.concatenate(cases)
    mean = everything.mean()
    bread = 1.0 / everything.size
    meat = sum(float(np.sum(c - mean)) ** 2 for c in cases)
    groups = len(cases)
    return mean, float(np.sqrt(groups / (groups - 1) * bread * meat * bread)), groups


def test_unbalanced_interval_is_the_cluster_robust_sandwich() -> None:
    rng = np.random.default_rng(1)
    values = rng.normal(size=(1, 9, 6)) * np.arange(1, 10)[None, :, None]
    values[0, 2, 1:] = np.nan
    values[0, 5, :4] = np.nan
    values[0, 7, :] = np.nan  # a case without data is not a cluster
    mean, error, groups = _sandwich(values[0])
    estimate = ratio_means(values)
    se, freedom = standard_error(estimate)
    assert estimate.estimate[0] == pytest.approx(mean) and se[0] == pytest.approx(error) and freedom[0] == groups - 1
    low, high = t_interval(estimate)
    half = stats.t.ppf(0.975, groups - 1) * error
    assert (low[0], high[0]) == (pytest.approx(mean - half), pytest.approx(mean + half))


def test_strata_pool_suites_with_their_own_spread() -> None:
    rng = np.random.default_rng(2)
    first, second = rng.normal(size=(6, 4)), rng.normal(3.0, 2.0, size=(8, 4))
    stacked = np.concatenate([first, second])[None]
    pooled = ratio_means(stacked, np.array([0] * 6 + [1] * 8))
    everything = np.concatenate([first.ravel(), second.ravel()])
    mean, total = everything.mean(), everything.size
    variance = 0.0
    for block in (first, second):  # stratified linearisation: centred within each stratum, G_h/(G_h − 1)
        z = (block.sum(axis=1) - mean * block.shape[1]) / total
        variance += block.shape[0] / (block.shape[0] - 1) * np.sum((z - z.mean()) ** 2)
    se, freedom = standard_error(pooled)
    assert pooled.estimate[0] == pytest.approx(mean)
    assert se[0] == pytest.approx(np.sqrt(variance)) and freedom[0] == 5 + 7


def test_weighted_sum_of_ratio_means_is_the_interval_of_the_per_case_combination() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(1, 10, 4)), rng.normal(size=(1, 10, 4))
    combined = weighted_sum([(2.0, ratio_means(a)), (-0.5, ratio_means(b))])
    per_case = 2.0 * a[0].mean(axis=1) - 0.5 * b[0].mean(axis=1)
    expected = stats.ttest_1samp(per_case, 0.0).confidence_interval(0.95)
    low, high = t_interval(combined)
    assert combined.estimate[0] == pytest.approx(per_case.mean())
    assert (low[0], high[0]) == (pytest.approx(expected.low), pytest.approx(expected.high))


def test_interval_reflects_prompt_variation_not_only_seeds() -> None:
    # No seed variation at all, large prompt variation: the interval must still be wide.
    matrix = np.repeat(np.array([[1.0], [5.0], [9.0], [3.0]]), 8, axis=1)[None]
    low, high = t_interval(ratio_means(matrix))
    assert high[0] - low[0] > 3.0
    constant = np.full((1, 4, 8), 2.5)
    assert [float(x[0]) for x in t_interval(ratio_means(constant))] == [2.5, 2.5]
    one_case = np.ones((1, 1, 8))
    assert np.isnan(t_interval(ratio_means(one_case))[0][0])  # one prompt: no interval, not a zero-width one


def test_seed_std_is_mean_within_prompt_sd() -> None:
    matrix = np.array([[1.0, 3.0], [10.0, 14.0], [7.0, np.nan]])
    # Prompts with a single value cannot show seed variation and are left out.
    assert seed_std(matrix) == pytest.approx((np.std([1, 3], ddof=1) + np.std([10, 14], ddof=1)) / 2)


def _frame(checkpoints: dict[str, float], suites: tuple[str, ...] = ("q",)) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    rows = []
    for name, offset in checkpoints.items():
        for suite in suites:
            for case in range(5):
                for seed in range(6):
                    rows.append({"checkpoint": name, "suite": suite, "case_id": f"{case:03d}", "seed": seed,
                                 "scorer": "s", "value": offset + case * 0.3 + rng.normal()})
    return pd.DataFrame(rows)


def test_adding_a_checkpoint_never_changes_another_ones_summary() -> None:
    pool = _frame({"a": 5.0, "b": 6.0})
    bigger = pd.concat([pool, _frame({"c": 9.0})])
    assert summarize(pool)["a"]["s"] == summarize(bigger)["a"]["s"]


def test_pooled_summary_interval_stratifies_by_suite() -> None:
    frame = _frame({"a": 5.0}, suites=("q", "r"))
    summary = summarize(frame)["a"]["s"]
    matrices = [frame[frame.suite == s].pivot(index="case_id", columns="seed", values="value").to_numpy()
                for s in ("q", "r")]
    expected = t_interval(ratio_means(np.concatenate(matrices)[None], np.array([0] * 5 + [1] * 5)))
    assert summary.ci95 == (pytest.approx(expected[0][0]), pytest.approx(expected[1][0]))
    assert summary.mean == pytest.approx(frame["value"].mean())


def test_stable_rng_depends_only_on_seed_and_labels() -> None:
    assert stable_rng(0, "a", "s").random() == stable_rng(0, "a", "s").random()
    assert stable_rng(0, "a", "s").random() != stable_rng(1, "a", "s").random()
    assert stable_rng(0, "a", "s").random() != stable_rng(0, "b", "s").random()
