"""Votes as comparisons between checkpoints, grouped by case, and the case-cluster bootstrap over them.

A vote compares two images; the run's record says which checkpoint made each (by image key, so votes cast
on an earlier run's images still count when a later run has the same images). Votes are resampled by
case — a prompt's images share its difficulty and the rater's mood about it — as the score intervals are.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ckptbench.arena.bradley_terry import DavidsonFit, PairCounts, fit_davidson

WIN_A, WIN_B, TIE = 0, 1, 2


@dataclass(frozen=True)
class Comparisons:
    """One row per usable vote: checkpoints a and b (indices into ``names``), outcome, case cluster."""

    names: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    outcome: np.ndarray  # WIN_A, WIN_B or TIE
    cluster: np.ndarray  # index of the vote's (suite, case)
    clusters: int
    votes: tuple[Mapping[str, object], ...]  # the vote rows behind each comparison, in the same order

    def __len__(self) -> int:
        return len(self.a)

    def subset(self, mask: np.ndarray) -> Comparisons:
        kept = tuple(vote for vote, keep in zip(self.votes, mask, strict=True) if keep)
        return Comparisons(self.names, self.a[mask], self.b[mask], self.outcome[mask], self.cluster[mask],
                           self.clusters, kept)

    def counts(self, weights: np.ndarray | None = None) -> PairCounts:
        """Outcomes per unordered pair (i < j), each vote weighted by its cluster's bootstrap weight."""
        k = len(self.names)
        w = np.ones(len(self)) if weights is None else weights[self.cluster]
        low, high = np.minimum(self.a, self.b), np.maximum(self.a, self.b)
        pair = low * k + high
        low_won = np.where(self.a == low, self.outcome == WIN_A, self.outcome == WIN_B)
        high_won = np.where(self.a == low, self.outcome == WIN_B, self.outcome == WIN_A)
        size = k * k
        wins_low = np.bincount(pair, weights=w * low_won, minlength=size)
        wins_high = np.bincount(pair, weights=w * high_won, minlength=size)
        ties = np.bincount(pair, weights=w * (self.outcome == TIE), minlength=size)
        used = np.flatnonzero(wins_low + wins_high + ties)
        return PairCounts(used // k, used % k, wins_low[used], wins_high[used], ties[used])

    def fit(self, weights: np.ndarray | None = None) -> DavidsonFit:
        return fit_davidson(len(self.names), self.counts(weights))


def comparisons_from_votes(votes: Iterable[Mapping[str, object]], owners: Mapping[str, str],
                           names: Sequence[str]) -> tuple[Comparisons, int]:
    """Votes whose two images both belong to one checkpoint each of ``names``; and how many were left out."""
    index = {name: position for position, name in enumerate(names)}
    clusters: dict[tuple[str, str], int] = {}
    rows: list[tuple[int, int, int, int]] = []
    kept: list[Mapping[str, object]] = []
    skipped = 0
    for vote in votes:
        left, right = owners.get(str(vote["left_key"])), owners.get(str(vote["right_key"]))
        if left is None or right is None or left == right or left not in index or right not in index:
            skipped += 1
            continue
        outcome = {"left": WIN_A, "right": WIN_B}.get(str(vote["choice"]), TIE)
        cluster = clusters.setdefault((str(vote["suite"]), str(vote["case_id"])), len(clusters))
        rows.append((index[left], index[right], outcome, cluster))
        kept.append(vote)
    array = np.array(rows, dtype=np.int64).reshape(-1, 4)
    return Comparisons(tuple(names), array[:, 0], array[:, 1], array[:, 2], array[:, 3], len(clusters),
                       tuple(kept)), skipped


def cluster_weights(clusters: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples × clusters] multiplicities of a case-cluster bootstrap (each row sums to ``clusters``)."""
    rng = np.random.default_rng(seed)
    if clusters == 0:
        return np.zeros((resamples, 0))
    return rng.multinomial(clusters, np.full(clusters, 1.0 / clusters), size=resamples).astype(float)


def percentile_interval(values: np.ndarray, level: float = 0.95) -> list[float]:
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]
