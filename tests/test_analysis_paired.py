"""Paired Wilcoxon p-values are computed per pair: each equals ``scipy.stats.wilcoxon`` on that pair alone, so a
tied pair elsewhere in the pool, or a checkpoint added to it, never changes another pair's p-value."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ckptbench.analysis.analyze import analyze
from ckptbench.analysis.paired import all_pairs, case_differences, wilcoxon_many
from ckptbench.analysis.suite import AnalysisSettings
from ckptbench.suites.notm import CheckpointIdentity


def _dyadic(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Normal values on a 2⁻²⁰ grid, so that adding a multiple of 1/4 and subtracting again is exact."""
    return np.round(rng.normal(size=shape) * 2**20) / 2**20


def _pool_with_one_tied_pair(cases: int = 20, seeds: int = 3) -> np.ndarray:
    rng = np.random.default_rng(11)
    values = _dyadic(rng, (4, cases, seeds)) + np.arange(cases)[None, :, None] / 8
    # Checkpoint 3 = checkpoint 0 + a per-case shift in which two cases share the shift exactly: the pair (0, 3)
    # has tied per-case differences; no other pair has a tie or a zero.
    shift = rng.integers(1, 40, size=cases) / 4
    shift[5] = shift[9] = 2.25
    values[3] = values[0] + shift[:, None]
    return values


def test_each_pair_p_value_equals_scipy_on_that_pair_alone() -> None:
    values = _pool_with_one_tied_pair()
    names = ["a", "b", "c", "d"]
    pairs = all_pairs(values, names, higher_is_better=True)
    tied = next(p for p in pairs if (p["a"], p["b"]) == ("a", "d"))
    differences = case_differences(values[3] - values[0])
    assert np.unique(np.abs(differences)).size < differences.size  # the pair really has a tie
    for pair in pairs:
        i, j = names.index(pair["a"]), names.index(pair["b"])
        alone_cases = stats.wilcoxon(case_differences(values[i] - values[j])).pvalue
        alone_cells = stats.wilcoxon((values[i] - values[j]).ravel()).pvalue
        assert pair["p_cases"] == alone_cases  # exactly: the same scipy computation
        assert pair["p_cells"] == alone_cells
    # With the tie present scipy uses the normal approximation for that pair only; every other pair of 20
    # untied cases gets the exact distribution (a batch of all pairs at once would have switched them all).
    assert tied["p_cases"] == stats.wilcoxon(differences, method="asymptotic").pvalue
    untied = next(p for p in pairs if (p["a"], p["b"]) == ("a", "b"))
    exact = stats.wilcoxon(case_differences(values[0] - values[1]), method="exact").pvalue
    assert untied["p_cases"] == exact
    assert untied["p_cases"] != stats.wilcoxon(case_differences(values[0] - values[1]), method="asymptotic").pvalue


def test_wilcoxon_many_matches_scipy_per_sample_in_every_regime() -> None:
    rng = np.random.default_rng(12)
    samples = [
        rng.normal(size=20), rng.normal(size=20),  # untied, short: exact
        np.r_[rng.normal(size=18), 0.5, -0.5],  # as short, with a tie: the approximation
        np.array([1.0, -2.0, 2.0, 3.0, 4.0, 5.0, -6.0, 7.0, 8.0, 9.0, 10.0, 11.0]),  # a tie, ≤ 13: permutation
        np.array([0.0, 1.5, 2.5, -3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5, 10.5, 11.5, 12.5, 13.5, 14.5]),  # a zero, 15
        np.round(rng.normal(size=80), 1), rng.normal(size=80),  # long: the approximation, ties or not
    ]
    expected = [float(stats.wilcoxon(s).pvalue) for s in samples]
    assert wilcoxon_many(samples) == expected
    assert wilcoxon_many(samples[::-1]) == expected[::-1]


def _frame(values: dict[str, np.ndarray]) -> pd.DataFrame:
    rows = [(name, "quality", f"{p:03d}", "", s + 1, "laion-aesthetic-v2", array[p, s])
            for name, array in values.items() for p in range(array.shape[0]) for s in range(array.shape[1])]
    return pd.DataFrame(rows, columns=["checkpoint", "suite", "case_id", "prompt", "seed", "scorer", "value"])


def _baseline_block(values: dict[str, np.ndarray]) -> dict:
    settings = AnalysisSettings(resamples=100, baseline="base")
    result = analyze(_frame(values), settings, checkpoints=[CheckpointIdentity(n) for n in values])
    return result["suites"]["quality"]["scorers"]["laion-aesthetic-v2"]["baseline"]["scores"]


def test_adding_a_checkpoint_with_tied_differences_changes_no_baseline_p_value() -> None:
    values = _pool_with_one_tied_pair()
    pool = {"base": values[0], "b": values[1], "c": values[2]}
    before = _baseline_block(pool)
    after = _baseline_block({**pool, "tied": values[3]})
    for name in ("b", "c"):
        assert after[name] == before[name]
        alone = stats.wilcoxon(case_differences(pool[name] - pool["base"])).pvalue
        assert before[name]["p_cases"] == pytest.approx(alone, rel=0, abs=0)
