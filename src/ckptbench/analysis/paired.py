"""Paired comparisons of checkpoints on identical (case, seed) cells.

Two checkpoints are compared only on the cells both have a value for (a missing or failed image drops
that cell for this pair alone). Per pair: the mean difference with its 95% cluster-t interval; the win
rate (share of shared cells where the first is better, ties count half); and Wilcoxon signed-rank
p-values (Holm-corrected over the family ``multiplicity.py`` states).

Two p-values are given. ``p_cases`` tests the per-case mean differences: cases are the independent
units of the design, so this is the one to trust. ``p_cells`` tests the per-image differences as if
every image were independent; images of one case share the case's effect, so it overstates the
evidence when cases differ, and is kept for comparison with tools that report it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import stats

from ckptbench.analysis.intervals import json_interval, ratio_means, t_interval


def wilcoxon_p(differences: np.ndarray) -> float | None:
    """Two-sided Wilcoxon signed-rank p-value; 1.0 when every difference is zero, None without data."""
    return wilcoxon_many([differences])[0]


def wilcoxon_many(samples: Sequence[np.ndarray]) -> list[float | None]:
    """``wilcoxon_p`` of many samples: each p-value is what ``scipy.stats.wilcoxon`` gives on that sample alone.

    scipy's ``method='auto'`` chooses the exact null distribution, a permutation test or the normal
    approximation from the ties and zeros of *everything it is given at once*, so samples cannot simply be
    stacked into one call: one tied pair would switch every other pair of the batch to the approximation.
    Samples go to scipy together only where that choice cannot depend on the others (scipy's documented
    rule): more than 50 values (always the approximation, decided by the length alone), or no ties and no
    zeros (the exact distribution). A short sample with ties or zeros gets a call of its own.
    """
    cleaned = [sample[np.isfinite(sample)] for sample in samples]
    result: list[float | None] = [None] * len(cleaned)
    batches: dict[int, list[int]] = {}
    for index, sample in enumerate(cleaned):
        if sample.size == 0:
            continue
        if not np.any(sample != 0):
            result[index] = 1.0
            continue
        if sample.size > _SCIPY_EXACT_MAX or not _has_ties_or_zeros(sample):
            batches.setdefault(sample.size, []).append(index)
        else:
            result[index] = _p_value(stats.wilcoxon(sample, zero_method="wilcox", alternative="two-sided").pvalue)
    for indices in batches.values():
        stacked = np.stack([cleaned[i] for i in indices])
        p_values = np.atleast_1d(stats.wilcoxon(stacked, axis=1, zero_method="wilcox", alternative="two-sided").pvalue)
        for i, p in zip(indices, p_values, strict=True):
            result[i] = _p_value(p)
    return result


# scipy.stats.wilcoxon(method="auto") uses the normal approximation above this many values, whatever the data.
_SCIPY_EXACT_MAX = 50


def _has_ties_or_zeros(sample: np.ndarray) -> bool:
    magnitudes = np.abs(sample)
    return bool(np.any(magnitudes == 0) or np.unique(magnitudes).size < magnitudes.size)


def _p_value(p: float) -> float | None:
    return float(p) if np.isfinite(p) else None


def compare_pairs(values: np.ndarray, index_pairs: Sequence[tuple[int, int]], higher_is_better: bool
                  ) -> list[dict[str, Any]]:
    """Compare values[i] with values[j] for each (i, j) on their shared cells; difference = i − j.

    ``values`` is (checkpoints, cases, seeds). The interval is the cluster-t interval of the mean difference
    (``intervals.py``); the p-values are Wilcoxon's, each computed as on that pair alone."""
    if not index_pairs:
        return []
    differences = np.stack([values[i] - values[j] for i, j in index_pairs])
    low, high = t_interval(ratio_means(differences))
    p_cells, p_cases = paired_p_values(list(differences))
    sign = 1.0 if higher_is_better else -1.0
    results = []
    for k, (i, j) in enumerate(index_pairs):
        shared = np.isfinite(differences[k])
        either = np.isfinite(values[i]) | np.isfinite(values[j])
        entry: dict[str, Any] = {"n_cells": int(shared.sum()), "excluded_cells": int((either & ~shared).sum())}
        if not shared.any():
            results.append({**entry, "n_cases": 0, "mean_diff": None, "ci95": [None, None], "win_rate": None,
                            "p_cells": None, "p_cases": None})
            continue
        cells = differences[k][shared]
        better = np.sign(cells * sign)
        results.append({
            **entry,
            "n_cases": int(shared.any(axis=1).sum()),
            "mean_diff": float(cells.mean()),
            "ci95": json_interval(low[k], high[k]),
            "win_rate": float(((better > 0).sum() + 0.5 * (better == 0).sum()) / cells.size),
            "p_cells": p_cells[k],
            "p_cases": p_cases[k],
        })
    return results


def paired_p_values(differences: Sequence[np.ndarray]) -> tuple[list[float | None], list[float | None]]:
    """(p_cells, p_cases) of each (cases, seeds) difference array: Wilcoxon on its finite cells and on its
    per-case means."""
    return wilcoxon_many(differences), wilcoxon_many([case_differences(d) for d in differences])


def case_differences(difference: np.ndarray) -> np.ndarray:
    """Per case, the mean of the finite cell differences (cases without one are left out)."""
    finite = np.isfinite(difference)
    counts = finite.sum(axis=1)
    sums = np.where(finite, difference, 0.0).sum(axis=1)
    return sums[counts > 0] / counts[counts > 0]


def all_pairs(values: np.ndarray, names: Sequence[str], higher_is_better: bool) -> list[dict[str, Any]]:
    """Every pair (a, b) with a before b in ``names``; ``values`` is (checkpoints, cases, seeds). The Holm
    adjustment is added later, over the family the analysis settings choose (``multiplicity.py``)."""
    index_pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))]
    pairs = []
    for (i, j), entry in zip(index_pairs, compare_pairs(values, index_pairs, higher_is_better), strict=True):
        diff = entry["mean_diff"]
        winner = None if diff is None or diff == 0 else (names[i] if (diff > 0) == higher_is_better else names[j])
        pairs.append({"a": names[i], "b": names[j], "better": winner, **entry})
    return pairs
