"""The arena's statistics: Davidson–Bradley–Terry against closed forms and Hunter's MM algorithm, recovery of
a simulated rater's hidden preference with interval coverage, scorer and inter-rater agreement by hand."""

from __future__ import annotations

import random

import numpy as np
import pytest

from ckptbench.arena.analysis import human_preference
from ckptbench.arena.bradley_terry import PairCounts, fit_davidson
from ckptbench.arena.pairs import ArenaCell, PairChooser


def counts(rows: list[tuple[int, int, float, float, float]]) -> PairCounts:
    array = np.array(rows, dtype=float)
    return PairCounts(array[:, 0].astype(int), array[:, 1].astype(int), array[:, 2], array[:, 3], array[:, 4])


def test_two_checkpoints_match_the_closed_form() -> None:
    """Two players make Davidson's model saturated: θ1 − θ0 = log(w1/w0) and ν = t / √(w0·w1) exactly (the
    multinomial MLE), up to the weak prior."""
    fit = fit_davidson(2, counts([(0, 1, 30, 50, 20)]))
    assert fit.theta[1] - fit.theta[0] == pytest.approx(np.log(50 / 30), abs=2e-3)
    assert fit.nu == pytest.approx(20 / np.sqrt(30 * 50), rel=2e-3)
    assert fit.theta.sum() == pytest.approx(0, abs=1e-9)


def hunter_mm(players: int, wins: np.ndarray, iterations: int = 5000) -> np.ndarray:
    """Bradley–Terry by Hunter's (2004) MM algorithm, as restated from the paper (no ties): γ_i ← W_i /
    Σ_j n_ij / (γ_i + γ_j); returns centred log γ."""
    gamma = np.ones(players)
    games = wins + wins.T
    for _ in range(iterations):
        denominator = (games / (gamma[:, None] + gamma[None, :])).sum(axis=1)
        gamma = wins.sum(axis=1) / denominator
        gamma /= np.exp(np.log(gamma).mean())
    log_gamma = np.log(gamma)
    return log_gamma - log_gamma.mean()


def test_without_ties_equals_bradley_terry_by_hunters_mm_algorithm() -> None:
    wins = np.array([[0, 7, 9, 12], [5, 0, 8, 10], [3, 6, 0, 9], [2, 4, 5, 0]], dtype=float)
    rows = [(i, j, wins[i, j], wins[j, i], 0.0) for i in range(4) for j in range(i + 1, 4)]
    fit = fit_davidson(4, counts(rows))
    reference = hunter_mm(4, wins)
    # The prior (sd 10) moves θ by well under 1e-2 here; without it the two agree to the optimiser's tolerance.
    assert np.abs(fit.theta - reference).max() < 1e-2
    assert list(np.argsort(-fit.theta)) == [0, 1, 2, 3]
    assert fit.nu == 0.0


def test_a_checkpoint_that_always_wins_stays_finite() -> None:
    fit = fit_davidson(2, counts([(0, 1, 12, 0, 0)]))
    assert np.isfinite(fit.theta).all() and fit.theta[0] > 2


CHECKPOINTS = ("a", "b", "c", "d")
TRUE_THETA = np.array([0.6, 0.2, -0.2, -0.6])
TRUE_NU = 0.4


def simulated_rater(cases: int, seeds: int, votes: int, seed: int) -> tuple[list[dict], dict[str, str], list]:
    """A rater whose hidden preference is Davidson(TRUE_THETA, TRUE_NU), voting on the pairs the arena's
    chooser picks (so the adaptive choice of pairs is part of what is checked); 'both bad' for a fifth of ties."""
    cells = [ArenaCell("quality", f"{c:03d}", f"prompt {c}", s, {name: f"{name}-{c}-{s}" for name in CHECKPOINTS})
             for c in range(cases) for s in range(seeds)]
    chooser = PairChooser(cells, random.Random(seed))
    rng = np.random.default_rng(seed)
    rows: list[dict] = []
    for number in range(votes):
        choice = chooser.choose("sim", rows)
        assert choice is not None
        i, j = CHECKPOINTS.index(choice.left), CHECKPOINTS.index(choice.right)
        weights = np.array([np.exp(TRUE_THETA[i]), np.exp(TRUE_THETA[j]),
                            TRUE_NU * np.exp((TRUE_THETA[i] + TRUE_THETA[j]) / 2)])
        outcome = rng.choice(3, p=weights / weights.sum())
        verdict = ("left", "right", "both_bad" if rng.random() < 0.2 else "tie")[outcome]
        rows.append({"rater": "sim", "suite": "quality", "case_id": choice.cell.case_id, "choice": verdict,
                     "left_key": choice.cell.images[choice.left], "right_key": choice.cell.images[choice.right],
                     "voted_at": float(number)})
    owners = {key: name for cell in cells for name, key in cell.images.items()}
    return rows, owners, cells


def test_a_simulated_raters_hidden_preference_is_recovered() -> None:
    votes, owners, _ = simulated_rater(cases=40, seeds=2, votes=400, seed=7)
    result = human_preference(votes, owners, CHECKPOINTS, {}, {}, resamples=200, seed=0)
    assert result is not None
    ranking = result["ranking"]["checkpoints"]
    assert [row["checkpoint"] for row in ranking] == list(CHECKPOINTS)
    for row in ranking:
        truth = TRUE_THETA[CHECKPOINTS.index(row["checkpoint"])]
        assert row["ci95"][0] <= row["theta"] <= row["ci95"][1]
        assert abs(row["theta"] - truth) < 0.35
    assert result["ranking"]["tie_parameter"] == pytest.approx(TRUE_NU, abs=0.2)
    assert sum(row["both_bad"] for row in ranking) > 0  # counted apart from plain ties


@pytest.mark.slow
def test_intervals_cover_the_hidden_preference_in_at_least_90_percent_of_repetitions() -> None:
    """40 seeded repetitions × 4 checkpoints: each 95 % interval should hold the true θ (about 20 s)."""
    covered = []
    for repetition in range(40):
        votes, owners, _ = simulated_rater(cases=30, seeds=2, votes=300, seed=1000 + repetition)
        result = human_preference(votes, owners, CHECKPOINTS, {}, {}, resamples=200, seed=repetition)
        assert result is not None
        for row in result["ranking"]["checkpoints"]:
            truth = TRUE_THETA[CHECKPOINTS.index(row["checkpoint"])]
            covered.append(row["ci95"][0] <= truth <= row["ci95"][1])
    assert np.mean(covered) >= 0.90, np.mean(covered)


def vote(rater: str, left: str, right: str, choice: str, case: str = "000") -> dict:
    return {"rater": rater, "suite": "quality", "case_id": case, "left_key": left, "right_key": right,
            "choice": choice}


def test_scorer_agreement_by_hand() -> None:
    """Three decisive votes: the scorer picks the voted image twice and ties once → (1 + 1 + ½)/3; the
    lower-is-better scorer sees the same numbers the other way round; ties and 'both bad' are left out."""
    owners = {"a1": "a", "b1": "b", "a2": "a", "b2": "b", "a3": "a", "b3": "b", "a4": "a", "b4": "b"}
    votes = [vote("r", "a1", "b1", "left", "000"), vote("r", "b2", "a2", "left", "001"),
             vote("r", "a3", "b3", "right", "002"), vote("r", "a4", "b4", "tie", "003")]
    scores = {"up": {"a1": 5.0, "b1": 4.0, "b2": 3.0, "a2": 3.0, "a3": 1.0, "b3": 2.0, "a4": 9.0, "b4": 0.0}}
    scores["down"] = scores["up"]
    result = human_preference(votes, owners, ["a", "b"], scores, {"up": True, "down": False},
                              resamples=50, seed=0)
    assert result is not None
    assert result["agreement"]["up"]["accuracy"] == pytest.approx(2.5 / 3)
    assert result["agreement"]["up"]["kendall_tau"] == pytest.approx(2 * 2.5 / 3 - 1)
    assert result["agreement"]["up"]["pairs"] == 3
    assert result["agreement"]["down"]["accuracy"] == pytest.approx(0.5 / 3)


def test_inter_rater_agreement_by_hand_with_sides_swapped() -> None:
    """Pair (x, y): r1 prefers x, r2 prefers x shown on the other side → agree; pair (u, v): r1 x-side wins,
    r2 ties → disagree. Observed 1/2; verdict shares (first 3/4, tie 1/4) give chance 0.625 → π = −1/3."""
    owners = {"x": "a", "y": "b", "u": "a", "v": "b"}
    votes = [vote("r1", "x", "y", "left"), vote("r2", "y", "x", "right"),
             vote("r1", "u", "v", "left", "001"), vote("r2", "u", "v", "tie", "001")]
    result = human_preference(votes, owners, ["a", "b"], {}, {}, resamples=20, seed=0)
    assert result is not None
    inter = result["inter_rater"]
    assert inter["image_pairs"] == 2 and inter["rater_pairs"] == 2
    assert inter["agreement"] == pytest.approx(0.5)
    assert inter["scott_pi"] == pytest.approx((0.5 - 0.625) / (1 - 0.625))
    assert set(result["by_rater"]) == {"r1", "r2"}


def test_votes_on_images_outside_the_run_are_counted_not_used() -> None:
    result = human_preference([vote("r", "a1", "zz", "left"), vote("r", "a1", "b1", "left")],
                              {"a1": "a", "b1": "b"}, ["a", "b"], {}, {}, resamples=20, seed=0)
    assert result is not None and result["votes"] == 1 and result["votes_outside_run"] == 1
    assert human_preference([vote("r", "zz", "yy", "left")], {}, ["a"], {}, {}, resamples=20, seed=0) is None


def test_the_chooser_prefers_close_and_rarely_compared_pairs() -> None:
    """After many votes say a ≫ b, the chooser turns to pairs it knows little about."""
    cells = [ArenaCell("quality", f"{c:03d}", "p", 1, {"a": f"a{c}", "b": f"b{c}", "c": f"c{c}"}) for c in range(40)]
    chooser = PairChooser(cells, random.Random(0))
    votes = [vote("other", f"a{c}", f"b{c}", "left", f"{c:03d}") for c in range(30)]
    picks = [tuple(sorted((chooser.choose("me", votes).left, chooser.choose("me", votes).right)))
             for _ in range(10)]
    assert ("a", "b") not in picks


def test_the_chooser_never_repeats_a_pair_for_a_rater_and_ends() -> None:
    cells = [ArenaCell("quality", "000", "p", seed, {"a": f"a{seed}", "b": f"b{seed}"}) for seed in range(3)]
    chooser = PairChooser(cells, random.Random(0))
    votes: list[dict] = []
    for _ in range(3):
        choice = chooser.choose("me", votes)
        assert choice is not None
        votes.append(vote("me", choice.cell.images[choice.left], choice.cell.images[choice.right], "tie"))
    assert len({frozenset((v["left_key"], v["right_key"])) for v in votes}) == 3
    assert chooser.choose("me", votes) is None
    assert chooser.choose("someone else", votes) is not None
