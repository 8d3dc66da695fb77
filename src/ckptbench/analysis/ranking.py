"""Rankings: competition ranks, the bootstrap distribution of each checkpoint's rank, and Kendall's τ
between scorers' rankings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import combinations
from typing import Any

import numpy as np
from scipy import stats


def ranks_of(means: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Competition ranks (1 = best, ties share the best rank) along the last axis; NaN ranks last."""
    oriented = np.where(np.isfinite(means), means if higher_is_better else -means, -np.inf)
    # rank = 1 + number of checkpoints strictly better
    return 1 + (oriented[..., None, :] > oriented[..., :, None]).sum(axis=-1)


def rank_distribution(boot_means: np.ndarray, names: Sequence[str], higher_is_better: bool
                      ) -> dict[str, dict[str, Any]]:
    """P(rank = 1), median rank and a 95% rank interval from (resamples, checkpoints) bootstrap means.

    A resample in which k checkpoints tie for first gives each of them 1/k of that resample, so the
    P(rank = 1) column sums to 1 over the checkpoints (ties happen, e.g. with scores clamped at 0).
    """
    ranks = ranks_of(boot_means, higher_is_better)
    first = ranks == 1
    share = first / np.maximum(first.sum(axis=1, keepdims=True), 1)
    result = {}
    for index, name in enumerate(names):
        column = ranks[:, index]
        low, high = np.percentile(column, [2.5, 97.5], method="inverted_cdf")
        result[name] = {"p_rank1": float(np.mean(share[:, index])), "median_rank": float(np.median(column)),
                        "mean_rank": float(np.mean(column)), "rank_ci95": [int(low), int(high)]}
    return result


def kendall_between_scorers(means: Mapping[str, Mapping[str, float | None]],
                            higher_is_better: Mapping[str, bool]) -> list[dict[str, Any]]:
    """Kendall's τ-b between every two scorers' orderings of the checkpoints both scored.

    ``means`` is scorer → checkpoint → the value the scorer ranks on. Scores are oriented so that
    "better" is larger for every scorer: τ = 1 means the two scorers agree on the order.
    """
    results = []
    for first, second in combinations(sorted(means), 2):
        shared = [c for c in means[first] if means[first][c] is not None and means[second].get(c) is not None]
        entry: dict[str, Any] = {"a": first, "b": second, "n": len(shared), "tau": None, "p": None}
        if len(shared) >= 2:
            a = [_oriented(means[first][c], higher_is_better[first]) for c in shared]
            b = [_oriented(means[second][c], higher_is_better[second]) for c in shared]
            outcome = stats.kendalltau(a, b)
            if np.isfinite(outcome.statistic):
                entry["tau"], entry["p"] = float(outcome.statistic), float(outcome.pvalue)
        results.append(entry)
    return results


def _oriented(value: float | None, higher_is_better: bool) -> float:
    assert value is not None
    return value if higher_is_better else -value
