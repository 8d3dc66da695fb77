"""Pool independence: a checkpoint's baseline-anchored score, its interval and its own summary do not move
when another checkpoint joins the pool; GhostReview's pool z-score does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ckptbench.analysis.analyze import analyze
from ckptbench.analysis.suite import AnalysisSettings
from ckptbench.suites.notm import CheckpointIdentity


def _frame(values: dict[str, np.ndarray], scorer: str = "laion-aesthetic-v2") -> pd.DataFrame:
    rows = [(name, "quality", f"{p:03d}", "", s + 1, scorer, array[p, s])
            for name, array in values.items() for p in range(array.shape[0]) for s in range(array.shape[1])]
    return pd.DataFrame(rows, columns=["checkpoint", "suite", "case_id", "prompt", "seed", "scorer", "value"])


def _analyze(values: dict[str, np.ndarray]) -> dict:
    settings = AnalysisSettings(resamples=300, seed=3, baseline="base", composite={"laion-aesthetic-v2": 1.0})
    return analyze(_frame(values), settings, checkpoints=[CheckpointIdentity(n) for n in values])


def test_baseline_anchored_score_does_not_move_when_the_pool_grows() -> None:
    rng = np.random.default_rng(0)
    case_effect = rng.normal(size=(10, 1))
    pool = {name: case_effect + shift + 0.3 * rng.normal(size=(10, 8))
            for name, shift in (("base", 0.0), ("tuned", 0.4), ("merge", -0.2))}
    before = _analyze(pool)["suites"]["quality"]
    after = _analyze({**pool, "newcomer": case_effect + 2.0 + 0.3 * rng.normal(size=(10, 8))})["suites"]["quality"]
    block_before = before["scorers"]["laion-aesthetic-v2"]
    block_after = after["scorers"]["laion-aesthetic-v2"]

    anchored_before = block_before["baseline"]["scores"]["tuned"]
    anchored_after = block_after["baseline"]["scores"]["tuned"]
    assert anchored_after == anchored_before  # difference, interval, win rate and p-values, all identical
    assert anchored_before["mean_diff"] == pytest.approx(np.mean(pool["tuned"] - pool["base"]))
    for key in ("mean", "ci95", "seed_std", "pooled_std", "good_rate"):
        assert block_after["summary"]["tuned"][key] == block_before["summary"]["tuned"][key]
    assert after["composite"]["scores"]["tuned"]["value"] == before["composite"]["scores"]["tuned"]["value"]
    assert after["composite"]["scores"]["tuned"]["ci95"] == before["composite"]["scores"]["tuned"]["ci95"]

    # The GhostReview standard score of the same checkpoint moves: it is relative to the pool.
    standard_before = block_before["summary"]["tuned"]["ghostreview_standard"]
    standard_after = block_after["summary"]["tuned"]["ghostreview_standard"]
    assert abs(standard_after - standard_before) > 0.1
    # and the pairs that existed before keep their numbers
    pairs_before = {(p["a"], p["b"]): p for p in block_before["pairs"]}
    for pair in block_after["pairs"]:
        if (pair["a"], pair["b"]) in pairs_before:
            old = pairs_before[(pair["a"], pair["b"])]
            assert pair["mean_diff"] == old["mean_diff"] and pair["ci95"] == old["ci95"]


def test_missing_cells_are_reported_and_excluded_pairwise() -> None:
    rng = np.random.default_rng(1)
    pool = {name: rng.normal(size=(4, 3)) for name in ("base", "a", "b")}
    pool["a"][1, 2] = np.nan
    pool["b"][:, 0] = np.nan
    result = _analyze(pool)
    block = result["suites"]["quality"]["scorers"]["laion-aesthetic-v2"]
    assert block["summary"]["a"]["missing"] == 1 and block["summary"]["b"]["missing"] == 4
    pairs = {(p["a"], p["b"]): p for p in block["pairs"]}
    assert pairs[("base", "a")]["n_cells"] == 11 and pairs[("base", "a")]["excluded_cells"] == 1
    assert pairs[("a", "b")]["n_cells"] == 7 and pairs[("a", "b")]["excluded_cells"] == 5
    missing = {(m["checkpoint"], m["missing"]) for m in result["missing"]}
    assert missing == {("a", 1), ("b", 4)}
