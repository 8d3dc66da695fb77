"""The confidence set for the best, the one-sentence verdict, the too-few-prompts warning, the ranking choice
(--rank-by) and the Holm families, on simulated pools with known truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from typer.testing import CliRunner

from ckptbench.analysis.analyze import analyze
from ckptbench.analysis.best import best_set, prompts_needed
from ckptbench.analysis.multiplicity import holm
from ckptbench.analysis.suite import AnalysisSettings
from ckptbench.analysis.verdict import prompts_for_significance, smallest_wilcoxon_p, too_few_prompts
from ckptbench.cli import app
from ckptbench.report.outputs import write_outputs
from ckptbench.suites.notm import CheckpointIdentity
from tests.html_tables import read_table
from tests.report_store import build_scores_store

# GhostReview's LAION variance components (quality suite of the release, ANOVA estimates).
COMPONENTS = {"prompt": 0.0636, "model_x_prompt": 0.0328, "seed_shared": 0.0062, "seed_within": 0.0414}


def simulated_pool(seed: int, means: np.ndarray, prompts: int = 30, seeds: int = 8) -> np.ndarray:
    """(checkpoints, prompts, seeds) scores of the crossed design with GhostReview-like variance."""
    rng = np.random.default_rng(seed)
    m = len(means)
    return (means[:, None, None] + np.sqrt(COMPONENTS["prompt"]) * rng.normal(size=(1, prompts, 1))
            + np.sqrt(COMPONENTS["model_x_prompt"]) * rng.normal(size=(m, prompts, 1))
            + np.sqrt(COMPONENTS["seed_shared"]) * rng.normal(size=(1, prompts, seeds))
            + np.sqrt(COMPONENTS["seed_within"]) * rng.normal(size=(m, prompts, seeds)))


def _frame(values: dict[str, np.ndarray], scorer: str = "laion-aesthetic-v2") -> pd.DataFrame:
    rows = [(name, "quality", f"{p:03d}", "", s + 1, scorer, array[p, s])
            for name, array in values.items() for p in range(array.shape[0]) for s in range(array.shape[1])]
    return pd.DataFrame(rows, columns=["checkpoint", "suite", "case_id", "prompt", "seed", "scorer", "value"])


def _analyze(values: dict[str, np.ndarray], **settings: object) -> dict:
    chosen = AnalysisSettings(resamples=500, scorer_order=("laion-aesthetic-v2",), **settings)  # type: ignore[arg-type]
    return analyze(_frame(values), chosen, checkpoints=[CheckpointIdentity(n) for n in values])


# --- the confidence set for the best ---------------------------------------------------------------


def test_equal_checkpoints_name_no_winner_in_results_and_report(tmp_path: Path) -> None:
    # Eight truly equal checkpoints. In this data set the apparent leader ranks first in 80% of bootstrap
    # resamples — read as a probability, that would crown it — yet the confidence set keeps 7 of the 8.
    pool = simulated_pool(7, np.full(8, 6.8))
    values = {f"model-{i}": pool[i] for i in range(8)}
    store = build_scores_store(tmp_path / "store", {"laion-aesthetic-v2": values})
    try:
        write_outputs(store)
    finally:
        store.close()
    results = json.loads((store.root / "results.json").read_text())
    quality = results["analysis"]["suites"]["quality"]
    block = quality["scorers"]["laion-aesthetic-v2"]
    leader = block["best_set"]["leader"]
    assert block["ranks"][leader]["p_rank1"] > 0.75
    assert len(block["best_set"]["members"]) == 7
    verdict = quality["verdict"]
    assert verdict["best_set"] == block["best_set"]["members"] and "is best" not in verdict["text"]
    assert "cannot be told apart from it with 30 prompts" in verdict["text"]

    html = (store.root / "report" / "index.html").read_text()
    assert verdict["text"].split(" (")[0] in html and " is best on " not in html
    _, rows = read_table(html, "leaderboard")
    marked = html.count('class="name in-best-set"')
    assert marked == 7 and len(rows) == 8


def test_a_clear_leader_is_named_best() -> None:
    pool = simulated_pool(3, np.array([7.4, 6.8, 6.8, 6.7]))
    result = _analyze({f"m{i}": pool[i] for i in range(4)})["suites"]["quality"]
    assert result["verdict"]["best_set"] == ["m0"]
    assert result["verdict"]["text"].startswith("m0 is best on laion-aesthetic-v2 (")
    assert "every other checkpoint is significantly worse with 30 prompts" in result["verdict"]["text"]


def test_best_set_rule_by_hand() -> None:
    # Per-prompt gaps of the leader over b: one-sided t-test on them at α / (k − 1) = 0.025.
    rng = np.random.default_rng(4)
    leader = rng.normal(size=(12, 3)) + 1.0
    close = leader - 0.05 + 0.3 * rng.normal(size=(12, 3))
    far = leader - 2.0 + 0.3 * rng.normal(size=(12, 3))
    found = best_set([(1.0, np.stack([leader, close, far]))], ["a", "b", "c"], "a")
    for row, other in zip(found["comparisons"], (close, far), strict=True):
        expected = stats.ttest_1samp((leader - other).mean(axis=1), 0.0, alternative="greater").pvalue
        assert row["p_one_sided"] == pytest.approx(expected, rel=1e-9)
        assert row["in_set"] == (expected >= 0.025)
    assert found["members"] == ["a", "b"] and found["per_comparison_alpha"] == 0.025
    # Lower-is-better scores enter oriented (× −1): the same set.
    flipped = best_set([(-1.0, -np.stack([leader, close, far]))], ["a", "b", "c"], "a")
    assert flipped["members"] == found["members"]


def test_equal_checkpoints_rarely_give_a_single_best() -> None:
    # The set misses a truly best checkpoint with probability ≤ 5%; with all eight equal, a set of one would
    # have to miss seven of them, so it must be rare. (A bootstrap "winner" with P(#1) > 0.5 is common.)
    singletons, sizes = 0, []
    for seed in range(300):
        pool = simulated_pool(1000 + seed, np.full(8, 6.8), seeds=4)
        leader = int(np.argmax(pool.mean(axis=(1, 2))))
        found = best_set([(1.0, pool)], [f"m{i}" for i in range(8)], f"m{leader}")
        sizes.append(len(found["members"]))
        singletons += len(found["members"]) == 1
    assert singletons / 300 <= 0.02 and np.mean(sizes) > 6.5


def test_prompts_needed_is_the_smallest_count_with_80_percent_power() -> None:
    gap, spread, level = 0.08, 0.25, 0.05 / 7
    error, freedom = spread / np.sqrt(30), 29.0
    needed = prompts_needed(gap, error, freedom, level)
    assert needed is not None

    def power(n: int) -> float:
        return float(stats.nct.sf(stats.t.ppf(1 - level, n - 1), n - 1, gap * np.sqrt(n) / spread))

    assert power(needed) >= 0.8 > power(needed - 1)
    normal_approximation = ((stats.norm.ppf(1 - level) + stats.norm.ppf(0.8)) * spread / gap) ** 2
    assert needed == pytest.approx(normal_approximation, rel=0.05)
    assert prompts_needed(0.0, error, freedom, level) is None and prompts_needed(1e-6, error, freedom, level) is None


# --- too few prompts -------------------------------------------------------------------------------


def test_smallest_wilcoxon_p_is_two_over_two_to_the_n() -> None:
    for n in (1, 4, 5, 6, 11, 20):
        assert smallest_wilcoxon_p(n) == pytest.approx(2.0 / 2**n)
    assert prompts_for_significance(1) == 6 and prompts_for_significance(28) == 11


def test_a_suite_with_four_prompts_warns() -> None:
    pool = simulated_pool(5, np.array([7.8, 6.8, 6.7]), prompts=4)
    result = _analyze({f"m{i}": pool[i] for i in range(3)})["suites"]["quality"]
    warnings = result["verdict"]["warnings"]
    assert len(warnings) == 1 and "With 4 prompts the per-prompt Wilcoxon test can never give p < 0.05" in warnings[0]
    assert "smallest possible p-value is 0.125" in warnings[0] and "at least 6 prompts" in warnings[0]
    pairs = result["scorers"]["laion-aesthetic-v2"]["pairs"]
    assert all(pair["p_cases"] >= 0.125 for pair in pairs)  # as the warning says
    assert too_few_prompts(9, 28) and not too_few_prompts(11, 28) and not too_few_prompts(30, 28)


# --- ranking -------------------------------------------------------------------------------------------


def _two_scorer_store(root: Path, analysis: dict[str, object] | None = None):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(6)
    first = {name: rng.normal(size=(8, 3)) + shift for name, shift in (("a", 3.0), ("b", 2.0), ("c", 1.0))}
    second = {name: rng.normal(size=(8, 3)) + shift for name, shift in (("a", 1.0), ("b", 2.0), ("c", 3.0))}
    return build_scores_store(root, {"first": first, "second": second}, analysis=analysis)


def test_rank_by_orders_the_leaderboard_and_is_named(tmp_path: Path) -> None:
    store = _two_scorer_store(tmp_path / "store")
    store.close()
    runner = CliRunner()
    outcome = runner.invoke(app, ["report", "--store", str(store.root)])
    assert outcome.exit_code == 0, outcome.output
    results = json.loads((store.root / "results.json").read_text())
    assert results["analysis"]["ranking"] == {"by": "first", "source": "default: the first scorer the spec names"}
    _, rows = read_table((store.root / "report" / "index.html").read_text(), "leaderboard")
    assert [row[1] for row in rows] == ["a", "b", "c"]
    assert "quality: a is best on first" in outcome.output

    outcome = runner.invoke(app, ["report", "--store", str(store.root), "--rank-by", "second"])
    assert outcome.exit_code == 0, outcome.output
    results = json.loads((store.root / "results.json").read_text())
    assert results["analysis"]["ranking"] == {"by": "second", "source": "command line (--rank-by)"}
    assert results["analysis"]["suites"]["quality"]["verdict"]["leader"] == "c"
    html = (store.root / "report" / "index.html").read_text()
    _, rows = read_table(html, "leaderboard")
    assert [row[1] for row in rows] == ["c", "b", "a"]
    assert "Ranked by second (command line (--rank-by))" in html
    leaderboard_csv = pd.read_csv(store.root / "leaderboard.csv")
    assert leaderboard_csv["checkpoint"].tolist() == ["c", "b", "a"] and set(leaderboard_csv["ranked_by"]) == {"second"}

    outcome = runner.invoke(app, ["report", "--store", str(store.root), "--rank-by", "composite"])
    assert outcome.exit_code == 0, outcome.output
    composite = json.loads((store.root / "results.json").read_text())["analysis"]["suites"]["quality"]["composite"]
    assert composite["equal_weights"] and composite["weights"] == {"first": 1.0, "second": 1.0}
    assert "Ranked by the composite score (equal weights: 1 × first, 1 × second)" in (
        store.root / "report" / "index.html").read_text()

    outcome = runner.invoke(app, ["report", "--store", str(store.root), "--rank-by", "secnd"])
    assert outcome.exit_code == 2
    assert "--rank-by 'secnd' is not a scorer of this run (did you mean 'second'?)" in " ".join(outcome.output.split())


def test_spec_rank_by_and_multiplicity_are_checked(write_spec) -> None:  # type: ignore[no-untyped-def]
    from ckptbench.errors import SpecError
    from ckptbench.spec_load import load_spec

    def spec(name: str, analysis: str) -> Path:
        path = write_spec(name)
        path.write_text(path.read_text() + "\n[analysis]\n" + analysis + "\n")
        return path

    good = load_spec(spec("good.toml", 'rank_by = "composite"\nmultiplicity = "run"'))
    assert good.analysis.rank_by == "composite" and good.analysis.multiplicity == "run"
    with pytest.raises(SpecError, match=r"rank_by 'laion-aesthetc-v2' is neither a scorer.*did you mean 'laion-aes"):
        load_spec(spec("typo.toml", 'rank_by = "laion-aesthetc-v2"'))
    with pytest.raises(SpecError, match="multiplicity"):
        load_spec(spec("bad.toml", 'multiplicity = "everything"'))


# --- multiplicity ----------------------------------------------------------------------------------------


def test_holm_families_per_scorer_and_run_wide() -> None:
    rng = np.random.default_rng(8)
    values = {name: rng.normal(size=(12, 3)) + shift for name, shift in (("base", 0.0), ("x", 0.5), ("y", 0.6))}
    frame = pd.concat([_frame(values, "s1"), _frame({k: v * 2 for k, v in values.items()}, "s2")])

    def run(mode: str) -> dict:
        settings = AnalysisSettings(resamples=200, baseline="base", multiplicity=mode, scorer_order=("s1", "s2"))
        return analyze(frame, settings, checkpoints=[CheckpointIdentity(n) for n in values])

    per_scorer, run_wide = run("per-scorer"), run("run")
    block = per_scorer["suites"]["quality"]["scorers"]["s1"]
    raw = [pair["p_cases"] for pair in block["pairs"]]
    assert [pair["p_cases_holm"] for pair in block["pairs"]] == holm(raw)
    assert block["holm_family"]["pairs"] == "quality · s1: all pairs (3 tests)"
    anchored = block["baseline"]["scores"]
    assert [anchored[n]["p_cases_holm"] for n in ("x", "y")] == holm([anchored[n]["p_cases"] for n in ("x", "y")])
    assert anchored["base"]["p_cases"] is None and anchored["base"]["p_cases_holm"] is None
    assert len(per_scorer["multiplicity"]["families"]) == 4  # pairs and baseline, for each of two scorers

    every = [pair for scorer in ("s1", "s2") for pair in run_wide["suites"]["quality"]["scorers"][scorer]["pairs"]]
    assert [pair["p_cases_holm"] for pair in every] == holm([pair["p_cases"] for pair in every])
    assert run_wide["multiplicity"]["families"] == [
        {"family": "run: every pairwise test of every suite and scorer (6 tests)", "tests": 6}]
    base_x = next(p for p in every[:3] if {p["a"], p["b"]} == {"base", "x"})
    assert run_wide["suites"]["quality"]["scorers"]["s1"]["baseline"]["scores"]["x"]["p_cases_holm"] == \
        base_x["p_cases_holm"]


def test_run_rank_by_is_checked_before_any_work(write_spec) -> None:  # type: ignore[no-untyped-def]
    spec = write_spec()
    outcome = CliRunner().invoke(app, ["run", str(spec), "--rank-by", "clip-scor", "--dry-run"])
    assert outcome.exit_code == 2
    assert "--rank-by 'clip-scor' is neither a scorer of the spec's scorers.use nor 'composite' or 'human' (did you " \
           "mean 'clip-score'?)" in " ".join(outcome.output.split())
    from ckptbench.analysis.results import spec_with_rank_by
    from ckptbench.spec_load import load_spec

    assert spec_with_rank_by(load_spec(spec), "clip-score").analysis.rank_by == "clip-score"
