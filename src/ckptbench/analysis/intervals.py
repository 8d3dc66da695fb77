"""Confidence intervals for means over a prompts × seeds design: the cluster-t interval.

What is sampled is the prompt (case): a suite's cases stand for the population of prompts like them,
each generated with its seeds. A checkpoint's mean is a ratio mean, Σ values / Σ present cells. Its
standard error comes from each case's total (Taylor linearisation with the small-sample factor G/(G−1),
G = cases with data, as cluster-robust and survey software compute it), and the interval uses Student's
t with G − 1 degrees of freedom. With the same number of values in every case this is exactly the
one-sample t-interval of the per-case means (``scipy.stats.ttest_1samp(case_means).confidence_interval``).

Why not the percentile bootstrap over prompts (what ckptbench used before): with 30 prompts it under-
covers (93.7–94.0 % for a nominal 95 % on data simulated with GhostReview's design), because resampling
30 clusters understates their spread and uses normal rather than t quantiles. The cluster-t interval is
exact when per-case means are normal and stays closest to 95 % in the simulations of
``benchmarks/interval_coverage.py``; it needs no resampling, so it has no Monte-Carlo noise either.

Everything here works on :class:`Linear` estimates: ratio means and weighted sums of them (paired
differences, composites), each carrying its per-case influence, so one standard-error formula serves
means, differences, good-image rates, composites and suites pooled as strata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Linear:
    """Estimates (one per row) that are weighted sums of ratio means, with each case's influence on them.

    ``influence[r, p]`` is the first-order change of estimate r per unit of case p's contribution: for a
    ratio mean R = Σ sums / N it is (sum_p − R · count_p) / N. ``present[r, p]``: case p has data for row r.
    ``strata[p]`` labels the stratum of case p (suites pooled in one summary); one stratum by default.
    """

    estimate: np.ndarray  # (rows,)
    influence: np.ndarray  # (rows, cases)
    present: np.ndarray  # (rows, cases) bool
    strata: np.ndarray  # (cases,) int

    def __add__(self, other: Linear) -> Linear:
        return Linear(self.estimate + other.estimate, self.influence + other.influence,
                      self.present | other.present, self.strata)

    def scaled(self, factor: float | np.ndarray) -> Linear:
        factor = np.asarray(factor, dtype=np.float64)
        return Linear(self.estimate * factor, self.influence * factor[..., None], self.present, self.strata)


def ratio_means(values: np.ndarray, strata: np.ndarray | None = None) -> Linear:
    """Mean of each row of a (rows, cases, seeds) array over its finite values (NaN = no value)."""
    finite = np.isfinite(values)
    sums = np.where(finite, values, 0.0).sum(axis=2)
    counts = finite.sum(axis=2).astype(np.float64)
    total = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        estimate = np.where(total > 0, sums.sum(axis=1) / total, np.nan)
        influence = np.where(total[:, None] > 0, (sums - estimate[:, None] * counts) / total[:, None], 0.0)
    labels = np.zeros(values.shape[1], dtype=np.int64) if strata is None else np.asarray(strata)
    return Linear(estimate, influence, counts > 0, labels)


def weighted_sum(parts: Sequence[tuple[float, Linear]]) -> Linear:
    """Σ weight × part, the parts on the same rows and cases."""
    total = parts[0][1].scaled(parts[0][0])
    for weight, part in parts[1:]:
        total = total + part.scaled(weight)
    return total


def standard_error(linear: Linear) -> tuple[np.ndarray, np.ndarray]:
    """(standard error, degrees of freedom) per row; NaN where fewer than two cases have data.

    Within each stratum the influences are centred and scaled by G_h / (G_h − 1); degrees of freedom are
    the cases with data less the strata they fall in."""
    variance = np.zeros(linear.estimate.shape)
    freedom = np.zeros(linear.estimate.shape)
    for stratum in np.unique(linear.strata):
        columns = linear.strata == stratum
        present = linear.present[:, columns]
        influence = np.where(present, linear.influence[:, columns], 0.0)
        clusters = present.sum(axis=1).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            centre = np.where(clusters > 0, influence.sum(axis=1) / clusters, 0.0)
            spread = np.where(present, influence - centre[:, None], 0.0)
            scale = np.where(clusters > 1, clusters / (clusters - 1), 0.0)
        variance += scale * (spread**2).sum(axis=1)
        freedom += np.maximum(clusters - 1, 0)
    usable = (freedom > 0) & np.isfinite(linear.estimate)
    return np.where(usable, np.sqrt(variance), np.nan), np.where(usable, freedom, np.nan)


def t_interval(linear: Linear, level: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided cluster-t interval per row (NaN where it cannot be computed)."""
    error, freedom = standard_error(linear)
    with np.errstate(invalid="ignore"):
        quantile = stats.t.ppf(0.5 + level / 2.0, np.where(np.isfinite(freedom), freedom, 1.0))
        half = np.where(np.isfinite(freedom), quantile * error, np.nan)
    return linear.estimate - half, linear.estimate + half


def p_greater_than_zero(linear: Linear) -> np.ndarray:
    """One-sided p-value of H0 "the row's population value is ≤ 0" from the cluster t statistic.

    A zero standard error gives p = 0 for a positive estimate and 1 otherwise; NaN without data."""
    error, freedom = standard_error(linear)
    estimate = linear.estimate
    with np.errstate(invalid="ignore", divide="ignore"):
        statistic = np.where(error > 0, estimate / error, np.where(estimate > 0, np.inf, -np.inf))
        p = stats.t.sf(statistic, np.where(np.isfinite(freedom), freedom, 1.0))
    return np.where(np.isfinite(freedom), p, np.nan)


def json_interval(low: float, high: float, clip: tuple[float, float] | None = None) -> list[float | None]:
    """[low, high] for results.json: None where not finite; ``clip`` bounds a rate to [0, 1]."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return [None, None]
    if clip is not None:
        low, high = max(low, clip[0]), min(high, clip[1])
    return [float(low), float(high)]
