"""Ranking by human preference (``--rank-by human``): the confidence set for the most preferred checkpoint, and
a leaderboard, verdict and leaderboard.csv ordered by the arena's Bradley–Terry strengths instead of a scorer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from ckptbench.arena.analysis import human_preference
from ckptbench.arena.server import create_app, open_arena
from ckptbench.cli import app as cli
from ckptbench.report.outputs import write_outputs
from ckptbench.store import Store
from tests.report_store import build_report_store
from tests.test_arena_analysis import CHECKPOINTS, simulated_rater, vote

# The opposite of report_store's "aesthetic" order (alpha > beta > gamma): ranking by votes must reorder.
TASTE = {"gamma": 2.0, "beta": 1.0, "alpha": 0.0}


def test_a_clear_favourite_is_alone_in_the_best_set() -> None:
    votes, owners, _ = simulated_rater(cases=40, seeds=2, votes=400, seed=7)
    ranking = human_preference(votes, owners, CHECKPOINTS, {}, {}, resamples=300, seed=0)["ranking"]
    best = ranking["best_set"]
    assert best["leader"] == "a" and "d" not in best["members"]
    assert [row["rank"] for row in ranking["checkpoints"]] == [1, 2, 3, 4]
    # The set is made by its documented rule: a checkpoint is in it when the one-sided bootstrap bound of its gap
    # to the leader (level 5 % / 3) is at or below zero.
    assert all(row["in_set"] == (row["gap_lower_bound"] <= 0) for row in best["comparisons"])
    assert best["members"] == ["a", *(row["checkpoint"] for row in best["comparisons"] if row["in_set"])]


def test_equal_checkpoints_all_stay_in_the_best_set() -> None:
    rng = np.random.default_rng(5)
    owners = {f"{name}{case}": name for name in "abc" for case in range(30)}
    votes = []
    for case in range(30):
        for left, right in (("a", "b"), ("b", "c"), ("a", "c")):
            votes.append(vote("r", f"{left}{case}", f"{right}{case}", str(rng.choice(["left", "right"])),
                              case=f"{case:03d}"))
    best = human_preference(votes, owners, ["a", "b", "c"], {}, {}, resamples=300, seed=0)["ranking"]["best_set"]
    assert sorted(best["members"]) == ["a", "b", "c"]


def cast_votes(store: Path, count: int) -> None:
    arena = open_arena(store, rater="ann", seed=2)
    web = TestClient(create_app(arena), base_url="http://127.0.0.1")
    rng = np.random.default_rng(11)
    for _ in range(count):
        pair = web.get("/api/next", params={"rater": "ann"}).json()
        if pair["done"]:
            break
        issued = arena.book.pair(pair["token"])
        gap = TASTE[issued.left_checkpoint] - TASTE[issued.right_checkpoint]
        choice = "left" if rng.random() < 1 / (1 + np.exp(-2.0 * gap)) else "right"
        assert web.post("/api/vote", json={"token": pair["token"], "choice": choice}).status_code == 200


@pytest.fixture
def voted_store(tmp_path: Path) -> Path:
    build_report_store(tmp_path / "store", prompts=4).close()
    cast_votes(tmp_path / "store", 36)
    return tmp_path / "store"


def leaderboard_order(out: Path) -> list[str]:
    table = pd.read_csv(out / "leaderboard.csv")
    return list(table[table["suite"] == "quality"]["checkpoint"])


def test_rank_by_human_orders_the_leaderboard_by_the_votes(voted_store: Path) -> None:
    opened = Store(voted_store, read_only=True)
    try:
        results_path, report_path = write_outputs(opened, out=voted_store / "by-score")
        assert leaderboard_order(voted_store / "by-score")[0] == "alpha"  # the default: the first scorer
        results_path, report_path = write_outputs(opened, out=voted_store / "by-human", rank_by="human")
    finally:
        opened.close()
    results = json.loads(results_path.read_text())
    quality = results["analysis"]["suites"]["quality"]
    assert quality["ranking"]["by"] == "human" and "arena votes" in quality["ranking"]["label"]
    voted = [row["checkpoint"] for row in quality["human"]["checkpoints"]]
    assert voted == ["gamma", "beta", "alpha"]
    assert leaderboard_order(voted_store / "by-human") == [*voted, "broken"]  # report_store's failed checkpoint last
    table = pd.read_csv(voted_store / "by-human" / "leaderboard.csv")
    assert set(table["ranked_by"]) == {"human"}
    first = table.iloc[0]
    assert first["human_ci_low"] <= first["human_theta"] <= first["human_ci_high"] and first["human_votes"] > 0
    verdict = quality["verdict"]
    assert verdict["leader"] == "gamma" and verdict["text"].startswith("gamma ")
    assert verdict["best_set"] == quality["human"]["best_set"]["members"]
    html = report_path.read_text()
    assert "human θ" in html and verdict["text"].split(" (")[0] in html


def test_rank_by_human_without_votes_falls_back_and_says_so(tmp_path: Path) -> None:
    build_report_store(tmp_path / "store", prompts=4).close()
    result = CliRunner().invoke(cli, ["report", "--store", str(tmp_path / "store"), "--rank-by", "human"])
    assert result.exit_code == 0, result.output
    ranking = json.loads((tmp_path / "store" / "results.json").read_text())["analysis"]["suites"]["quality"]["ranking"]
    assert ranking["by"] != "human" and "no arena votes" in ranking["source"]


def test_an_unknown_rank_by_names_human_among_the_choices(tmp_path: Path) -> None:
    build_report_store(tmp_path / "store", prompts=4).close()
    result = CliRunner().invoke(cli, ["report", "--store", str(tmp_path / "store"), "--rank-by", "humans"])
    assert result.exit_code == 2 and "did you mean 'human'" in result.output


def test_a_pair_never_mixes_two_sweep_variants() -> None:
    from ckptbench.arena.pairs import arena_cells

    rows = [{"suite": "quality", "case_id": "000", "prompt": "a cube", "seed": 1, "checkpoint": name,
             "variant": variant, "image": f"images/{name}{variant}.png", "image_key": f"{name}-{variant}"}
            for name in ("a", "b") for variant in ("cfg=5", "cfg=7")]
    cells = arena_cells(rows)
    assert [(cell.variant, dict(cell.images)) for cell in cells] == [
        ("cfg=5", {"a": "a-cfg=5", "b": "b-cfg=5"}), ("cfg=7", {"a": "a-cfg=7", "b": "b-cfg=7"})]
