"""The "human preference" part of results.json: a ranking from votes, inter-rater agreement, and how often
each automatic scorer picks the image the rater picked.

* Ranking: Davidson–Bradley–Terry strengths θ (log-odds, mean 0; ``bradley_terry``), pooled over raters and
  per rater, with 95 % case-cluster bootstrap percentile intervals. ``elo`` restates θ on the familiar
  Elo scale (1000 + 400·log10(e)·θ): a 400-point gap is 10:1 odds of being preferred.
* "Both bad" is a tie for the ranking (no preference between the two was expressed, as LMSYS's arena
  counts "tie (bothbad)") and is also counted per checkpoint, since it says something absolute.
* Scorer agreement: on decisive votes (left or right) whose two images both have the scorer's value, the
  share where the scorer ranks the voted-for image better (a score tie counts one half), with a
  case-cluster bootstrap interval; Kendall's τ between vote and score order on those pairs is 2·share − 1.
* Inter-rater agreement: on image pairs judged by two or more raters (each rater's last vote), the share of
  rater pairs giving the same verdict (first image, second image, or tie/both bad) and Scott's π / Fleiss'
  κ, which discounts the agreement expected by chance from how often each verdict is given.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ckptbench.arena.bradley_terry import win_probability
from ckptbench.arena.comparisons import (
    TIE,
    WIN_A,
    WIN_B,
    Comparisons,
    cluster_weights,
    comparisons_from_votes,
    percentile_interval,
)
from ckptbench.arena.votes import read_votes

if TYPE_CHECKING:
    import pandas as pd

ELO_PER_THETA = 400 / np.log(10)
METHOD = ("Davidson–Bradley–Terry strengths (ties and 'both bad' as ties), 95 % case-cluster bootstrap "
          "percentile intervals; scorer agreement = share of decisive votes where the scorer prefers the "
          "same image (Kendall τ = 2·share − 1); inter-rater agreement with Scott's π")


def human_preference(votes: Sequence[Mapping[str, object]], owners: Mapping[str, str], names: Sequence[str],
                     scores: Mapping[str, Mapping[str, float]], directions: Mapping[str, bool | None], *,
                     resamples: int, seed: int) -> dict[str, Any] | None:
    """``owners``: image key → checkpoint in this run; ``scores``: scorer → image key → value;
    ``directions``: scorer → higher is better. None when no vote concerns this run's images."""
    comparisons, outside = comparisons_from_votes(votes, owners, names)
    if not len(comparisons):
        return None
    weights = cluster_weights(comparisons.clusters, resamples, seed)
    raters = sorted({str(vote["rater"]) for vote in comparisons.votes})
    rater_of = np.array([str(vote["rater"]) for vote in comparisons.votes])
    return {
        "method": METHOD,
        "votes": len(comparisons),
        "votes_outside_run": outside,
        "cases": comparisons.clusters,
        "raters": raters,
        "ranking": _ranking(comparisons, weights, comparisons.votes),
        # Per suite, for a leaderboard ordered by human preference (``--rank-by human``): votes of that suite
        # only, bootstrapped over its own cases.
        "suites": suite_rankings(comparisons.votes, owners, names, resamples=resamples, seed=seed),
        "by_rater": {rater: _ranking(comparisons.subset(rater_of == rater), weights,
                                     [v for v in comparisons.votes if v["rater"] == rater])
                     for rater in raters} if len(raters) > 1 else {},
        "agreement": _scorer_agreement(comparisons, scores, directions, weights),
        "inter_rater": _inter_rater(comparisons.votes),
    }


def _ranking(comparisons: Comparisons, weights: np.ndarray, votes: Sequence[Mapping[str, object]]) -> dict[str, Any]:
    fit = comparisons.fit()
    draws = np.array([comparisons.fit(row).theta for row in weights]) if len(weights) else np.empty((0, 0))
    tallies = _tallies(comparisons, votes)
    rows = []
    for index, name in enumerate(comparisons.names):
        tally = tallies[index]
        if not tally["votes"]:
            continue
        theta = float(fit.theta[index])
        interval = percentile_interval(draws[:, index]) if len(draws) else [theta, theta]
        rows.append({"checkpoint": name, "theta": theta, "ci95": interval, "elo": 1000 + ELO_PER_THETA * theta,
                     "elo_ci95": [1000 + ELO_PER_THETA * value for value in interval],
                     "p_preferred_vs_average": win_probability(theta, 0.0), **tally})
    rows.sort(key=lambda row: -row["theta"])
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank
    return {"checkpoints": rows, "tie_parameter": fit.nu, "votes": len(comparisons),
            "best_set": _best_set(rows, comparisons.names, draws)}


def _best_set(rows: Sequence[Mapping[str, Any]], names: Sequence[str], draws: np.ndarray) -> dict[str, Any] | None:
    """The 95 % confidence set for the most preferred checkpoint, as the suite analysis makes it for scores: the
    leader, and every checkpoint whose gap to the leader is not significantly above zero in a one-sided test at
    5 % / (k − 1) (Bonferroni over the k − 1 gaps; the gap's bootstrap distribution over cases)."""
    if not rows:
        return None
    leader = str(rows[0]["checkpoint"])
    others = [str(row["checkpoint"]) for row in rows[1:]]
    level = 0.05 / max(len(others), 1)
    members, gaps = [leader], []
    for name in others:
        if len(draws):
            gap = draws[:, names.index(leader)] - draws[:, names.index(name)]
            lower = float(np.percentile(gap, 100 * level))
        else:  # no resamples: nothing can be shown to differ
            lower = 0.0
        in_set = lower <= 0.0
        gaps.append({"checkpoint": name, "gap_lower_bound": lower, "in_set": in_set})
        if in_set:
            members.append(name)
    return {"leader": leader, "members": members, "comparisons": gaps,
            "method": "one-sided case-bootstrap percentile bound of θ(leader) − θ(other) at 5 % / (k − 1)"}


def suite_rankings(votes: Sequence[Mapping[str, object]], owners: Mapping[str, str], names: Sequence[str], *,
                   resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """The ranking of each suite's votes on its own, suite → ``ranking`` block."""
    suites = sorted({str(vote["suite"]) for vote in votes})
    rankings = {}
    for suite in suites:
        mine, _ = comparisons_from_votes([vote for vote in votes if str(vote["suite"]) == suite], owners, names)
        if len(mine):
            rankings[suite] = _ranking(mine, cluster_weights(mine.clusters, resamples, seed), mine.votes)
    return rankings


def _tallies(comparisons: Comparisons, votes: Sequence[Mapping[str, object]]) -> list[dict[str, int]]:
    tallies = [{"votes": 0, "wins": 0, "losses": 0, "ties": 0, "both_bad": 0} for _ in comparisons.names]
    for a, b, outcome, vote in zip(comparisons.a, comparisons.b, comparisons.outcome, votes, strict=True):
        for me, won in ((a, outcome == WIN_A), (b, outcome == WIN_B)):
            tally = tallies[me]
            tally["votes"] += 1
            if outcome == TIE:
                tally["both_bad" if vote["choice"] == "both_bad" else "ties"] += 1
            else:
                tally["wins" if won else "losses"] += 1
    return tallies


def _scorer_agreement(comparisons: Comparisons, scores: Mapping[str, Mapping[str, float]],
                      directions: Mapping[str, bool | None], weights: np.ndarray) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}
    decisive = comparisons.outcome != TIE
    for scorer, values in sorted(scores.items()):
        higher_is_better = directions.get(scorer)
        if higher_is_better is None:
            continue
        sign = 1.0 if higher_is_better else -1.0
        agree, clusters = [], []
        for vote, keep, cluster in zip(comparisons.votes, decisive, comparisons.cluster, strict=True):
            winner, loser = ((vote["left_key"], vote["right_key"]) if vote["choice"] == "left"
                             else (vote["right_key"], vote["left_key"]))
            if not keep or winner not in values or loser not in values:
                continue
            difference = sign * (values[str(winner)] - values[str(loser)])
            if np.isnan(difference):
                continue
            agree.append(1.0 if difference > 0 else 0.5 if difference == 0 else 0.0)
            clusters.append(cluster)
        if not agree:
            continue
        agreement, cluster_of = np.array(agree), np.array(clusters)
        draws = []
        for row in weights:
            w = row[cluster_of]
            if w.sum() > 0:
                draws.append(float((w * agreement).sum() / w.sum()))
        share = float(agreement.mean())
        interval = percentile_interval(np.array(draws)) if draws else [share, share]
        result[scorer] = {"accuracy": share, "ci95": interval, "kendall_tau": 2 * share - 1,
                          "kendall_tau_ci95": [2 * value - 1 for value in interval], "pairs": len(agreement)}
    return result


def _inter_rater(votes: Sequence[Mapping[str, object]]) -> dict[str, Any]:
    """Agreement between raters on the same image pairs (sides normalised), each rater's last vote."""
    verdicts: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for vote in votes:  # in time order: a later vote of the same rater on the same pair replaces the earlier
        left, right = str(vote["left_key"]), str(vote["right_key"])
        first, second = sorted((left, right))
        choice = vote["choice"]
        preferred = left if choice == "left" else right if choice == "right" else None
        verdicts[(first, second)][str(vote["rater"])] = 0 if preferred is None else 1 if preferred == first else 2
    pairs_of_raters = agreements = 0
    category_counts = np.zeros(3)
    shared = 0
    for by_rater in verdicts.values():
        if len(by_rater) < 2:
            continue
        shared += 1
        for verdict in by_rater.values():
            category_counts[verdict] += 1
        for one, other in combinations(by_rater.values(), 2):
            pairs_of_raters += 1
            agreements += one == other
    if not pairs_of_raters:
        return {"image_pairs": 0, "rater_pairs": 0, "agreement": None, "scott_pi": None}
    observed = agreements / pairs_of_raters
    shares = category_counts / category_counts.sum()
    expected = float((shares**2).sum())
    pi = (observed - expected) / (1 - expected) if expected < 1 else None
    return {"image_pairs": shared, "rater_pairs": pairs_of_raters, "agreement": observed, "scott_pi": pi}



def run_human_preference(root: Path, items: pd.DataFrame, frame: pd.DataFrame,
                         directions: Mapping[str, bool | None], *, resamples: int, seed: int) -> dict[str, Any] | None:
    """``human_preference`` for one run: its items say which checkpoint made each image key, its tidy score
    table gives each scorer's value per image. None when the store holds no vote on this run's images."""
    votes = read_votes(root)
    if not votes:
        return None
    made = items[items["image"].notna()]
    owners: dict[str, str] = {}
    for key, checkpoint in zip(made["image_key"], made["checkpoint"], strict=True):
        # An image key made by two checkpoint entries (the same file listed twice) cannot be attributed.
        owners[str(key)] = str(checkpoint) if owners.get(str(key), checkpoint) == checkpoint else ""
    owners = {key: name for key, name in owners.items() if name}
    scores: dict[str, dict[str, float]] = {}
    for scorer, rows in frame[frame["value"].notna()].groupby("scorer"):
        scores[str(scorer)] = dict(zip(rows["image_key"].astype(str), rows["value"].astype(float), strict=True))
    names = sorted(set(owners.values()))
    return human_preference(votes, owners, names, scores, directions, resamples=resamples, seed=seed)
