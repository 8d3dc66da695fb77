"""Each statistic of the suite analysis against an independent computation: scipy/numpy written another
way, or small examples worked by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ckptbench.analysis.joint import joint_weights, resampled_means, stable_rng
from ckptbench.analysis.multiplicity import holm
from ckptbench.analysis.paired import all_pairs, wilcoxon_many, wilcoxon_p
from ckptbench.analysis.ranking import kendall_between_scorers, rank_distribution, ranks_of
from ckptbench.analysis.standard import ghostreview_standard, pool_z_scores
from ckptbench.analysis.summary import prompt_seed_matrix, seed_std, summarize
from ckptbench.analysis.variance import variance_components

# --- GhostReview standard score ----------------------------------------------------------------


def test_pool_z_scores_hand_worked() -> None:
    # 2 checkpoints × 1 case × 2 seeds: pool of the case = {1, 3, 5, 7}: mean 4, std (ddof 0) √5.
    values = np.array([[[1.0, 3.0]], [[5.0, 7.0]]])
    root5 = np.sqrt(5.0)
    np.testing.assert_allclose(pool_z_scores(values)[:, 0, :], [[-3 / root5, -1 / root5], [1 / root5, 3 / root5]])
    np.testing.assert_allclose(ghostreview_standard(values), [-2 / root5, 2 / root5])


def test_ghostreview_standard_matches_scipy_zscore_per_case() -> None:
    rng = np.random.default_rng(0)
    values = rng.normal(size=(4, 5, 6)) + np.arange(5)[None, :, None]
    values[1, 2, 3] = np.nan
    frame = pd.DataFrame([(m, p, s, values[m, p, s]) for m in range(4) for p in range(5) for s in range(6)],
                         columns=["m", "p", "s", "x"]).dropna()
    frame["z"] = frame.groupby("p")["x"].transform(lambda x: stats.zscore(x, ddof=0))
    expected = frame.groupby("m")["z"].mean().to_numpy()
    np.testing.assert_allclose(ghostreview_standard(values), expected)
    excluded = np.zeros((4, 5), dtype=bool)
    excluded[0, 1] = True  # NoTM: standardised over the full pool, then left out of the average
    kept = frame[~((frame.m == 0) & (frame.p == 1))]
    np.testing.assert_allclose(ghostreview_standard(values, excluded), kept.groupby("m")["z"].mean().to_numpy())


# --- variance decomposition --------------------------------------------------------------------


def _sequential_sums_of_squares(values: np.ndarray) -> dict[str, float]:
    """Sums of squares of model, prompt, model×prompt, seed(prompt) and residual by least squares on
    dummy-coded design matrices, adding one term at a time (exact for a balanced design)."""
    m_count, p_count, s_count = values.shape
    m, p, s = np.meshgrid(range(m_count), range(p_count), range(s_count), indexing="ij")
    y = values.ravel()
    m, p, s = m.ravel(), p.ravel(), s.ravel()

    def dummies(codes: np.ndarray, levels: int) -> np.ndarray:
        return np.eye(levels)[codes]

    terms = {
        "model": dummies(m, m_count),
        "prompt": dummies(p, p_count),
        "model_x_prompt": dummies(m * p_count + p, m_count * p_count),
        "seed": dummies(p * s_count + s, p_count * s_count),
    }
    design = np.ones((len(y), 1))
    previous = np.sum((y - y.mean()) ** 2)
    result = {}
    for name, block in terms.items():
        design = np.hstack([design, block])
        fitted = design @ np.linalg.lstsq(design, y, rcond=None)[0]
        rss = np.sum((y - fitted) ** 2)
        result[name] = previous - rss
        previous = rss
    result["residual"] = previous
    return result


def test_variance_mean_squares_match_least_squares_anova() -> None:
    rng = np.random.default_rng(1)
    values = (rng.normal(size=(3, 1, 1)) + rng.normal(size=(1, 4, 1)) + 0.5 * rng.normal(size=(3, 4, 1))
              + 0.3 * rng.normal(size=(1, 4, 5)) + 0.2 * rng.normal(size=(3, 4, 5)))
    report = variance_components(values)
    sums = _sequential_sums_of_squares(values)
    df = report["degrees_of_freedom"]
    assert df == {"model": 2, "prompt": 3, "model_x_prompt": 6, "seed": 16, "residual": 32}
    for name in ("model", "prompt", "model_x_prompt", "seed", "residual"):
        assert report["mean_squares"][name] == pytest.approx(sums[name] / df[name], rel=1e-9)
    assert report["balanced"] and report["cells_dropped"] == 0


def test_variance_components_hand_cases() -> None:
    # Only the model matters: the whole variance is the model's, σ²_model = var(a, ddof=1).
    effects = np.array([1.0, 2.0, 4.0])
    only_model = np.broadcast_to(effects[:, None, None], (3, 4, 5)).copy()
    report = variance_components(only_model)
    assert report["components"]["model"] == pytest.approx(np.var(effects, ddof=1))
    assert report["shares"]["model"] == pytest.approx(1.0)
    for name in ("prompt", "model_x_prompt", "seed_shared", "seed_within"):
        assert report["components"][name] == pytest.approx(0.0, abs=1e-12)
    # The same seed effect on every model, equal case means: all of it is the shared seed component,
    # σ²_seed = within-case variance of the seed effects (ddof 1 per case): (10 + 10) / (2 × 4).
    seeds = np.array([[0.0, 1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0, 0.0]])
    shared = np.broadcast_to(seeds[None], (3, 2, 5)).copy()
    report = variance_components(shared)
    assert report["components"]["seed_shared"] == pytest.approx(20 / 8)
    assert report["components"]["seed_within"] == pytest.approx(0.0, abs=1e-12)
    assert report["shares"]["seed_shared"] == pytest.approx(1.0)


def test_variance_components_recover_simulated_truth() -> None:
    rng = np.random.default_rng(2)
    truth = {"model": 0.5, "prompt": 1.0, "model_x_prompt": 0.3, "seed_shared": 0.2, "seed_within": 0.4}
    m_count, p_count, s_count = 12, 60, 16
    values = (np.sqrt(truth["model"]) * rng.normal(size=(m_count, 1, 1))
              + np.sqrt(truth["prompt"]) * rng.normal(size=(1, p_count, 1))
              + np.sqrt(truth["model_x_prompt"]) * rng.normal(size=(m_count, p_count, 1))
              + np.sqrt(truth["seed_shared"]) * rng.normal(size=(1, p_count, s_count))
              + np.sqrt(truth["seed_within"]) * rng.normal(size=(m_count, p_count, s_count)))
    components = variance_components(values)["components"]
    assert components["seed_within"] == pytest.approx(truth["seed_within"], rel=0.05)
    assert components["seed_shared"] == pytest.approx(truth["seed_shared"], rel=0.15)
    assert components["model_x_prompt"] == pytest.approx(truth["model_x_prompt"], rel=0.15)
    assert components["prompt"] == pytest.approx(truth["prompt"], rel=0.4)
    assert components["model"] == pytest.approx(truth["model"], rel=0.6)


def test_variance_with_missing_cells_uses_cells_every_model_has() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=(3, 4, 5))
    gappy = values.copy()
    gappy[1, 2, 4] = np.nan  # one image of one model: the cell goes for every model
    report = variance_components(gappy)
    assert report["cells_used"] == 3 * (4 * 5 - 1) and report["cells_dropped"] == 2
    assert not report["balanced"] and report["seeds_per_case"] == pytest.approx(4 / (3 / 5 + 1 / 4))
    # The within-cell sums of squares are exact: seed + residual SS = Σ over kept cells of (y − cell mean)².
    kept = np.isfinite(gappy).all(axis=0)
    within = 0.0
    for m in range(3):
        for p in range(4):
            row = values[m, p][kept[p]]
            within += np.sum((row - row.mean()) ** 2)
    df, ms = report["degrees_of_freedom"], report["mean_squares"]
    assert df["seed"] * ms["seed"] + df["residual"] * ms["residual"] == pytest.approx(within)


# --- paired comparisons --------------------------------------------------------------------------


def test_holm_hand_worked() -> None:
    # sorted: 0.005×4 = 0.02, 0.01×3 = 0.03, 0.03×2 = 0.06, 0.04×1 = 0.04 → monotone: 0.02, 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, None, 0.6]) == [pytest.approx(1.0), None, pytest.approx(1.0)]


def test_wilcoxon_matches_scipy_and_handles_edges() -> None:
    rng = np.random.default_rng(4)
    samples = [np.round(rng.normal(0.3, 1, size=n), 1) for n in (12, 12, 40, 7)]
    expected = [stats.wilcoxon(s).pvalue for s in samples]
    assert wilcoxon_many(samples) == pytest.approx(expected)
    assert wilcoxon_p(np.zeros(5)) == 1.0
    assert wilcoxon_p(np.array([np.nan])) is None


def test_pairs_use_shared_cells_only() -> None:
    a = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, np.nan]])
    b = np.array([[0.0, 2.0, 4.0], [np.nan, 1.0, 1.0]])
    pair = all_pairs(np.stack([a, b]), ["a", "b"], higher_is_better=True)[0]
    differences = np.array([1.0, 0.0, -1.0, 4.0])  # shared cells: (0,0), (0,1), (0,2), (1,1)
    assert pair["n_cells"] == 4 and pair["excluded_cells"] == 2 and pair["n_cases"] == 2
    assert pair["mean_diff"] == pytest.approx(differences.mean())
    assert pair["win_rate"] == pytest.approx((2 + 0.5) / 4)  # a wins 2, one tie, b wins 1
    assert pair["p_cells"] == pytest.approx(stats.wilcoxon(differences).pvalue)
    assert pair["p_cases"] == pytest.approx(stats.wilcoxon([0.0, 4.0]).pvalue)
    assert pair["better"] == "a"
    lower = all_pairs(np.stack([a, b]), ["a", "b"], higher_is_better=False)[0]
    assert lower["better"] == "b" and lower["win_rate"] == pytest.approx((1 + 0.5) / 4)


# --- joint bootstrap ---------------------------------------------------------------------------


def test_resampled_means_equal_an_explicit_cluster_resample() -> None:
    cases, seeds, resamples = 5, 4, 50
    rng = np.random.default_rng(5)
    values = rng.normal(size=(3, cases, seeds))
    values[2, 1, :2] = np.nan
    boot = resampled_means(joint_weights(cases, seeds, resamples, 7, "suite"), values.reshape(3, -1))
    # The same draws, replayed by hand: cases with replacement, then seeds within each drawn case.
    draw = stable_rng(7, "joint-cluster-bootstrap", "suite")
    case_draw = draw.integers(0, cases, size=(resamples, cases))
    seed_draw = draw.integers(0, seeds, size=(resamples, cases, seeds))
    for b in range(resamples):
        picked = values[:, case_draw[b][:, None], seed_draw[b]]  # (3, cases, seeds)
        np.testing.assert_allclose(boot[b], np.nanmean(picked.reshape(3, -1), axis=1))


def test_joint_bootstrap_interval_of_a_mean_is_sensible() -> None:
    rng = np.random.default_rng(6)
    values = rng.normal(size=(1, 40, 8)) + rng.normal(size=(1, 40, 1))  # case effects dominate
    boot = resampled_means(joint_weights(40, 8, 2000, 0, "s"), values.reshape(1, -1))[:, 0]
    case_means = values[0].mean(axis=1)
    # With equal seeds per case the mean's SE is about that of the case means (the seeds add a little).
    assert np.std(boot) == pytest.approx(np.std(case_means, ddof=1) / np.sqrt(40), rel=0.2)


# --- ranks and agreement -----------------------------------------------------------------------


def test_ranks_match_scipy_min_ranking() -> None:
    means = np.array([[3.0, 1.0, 3.0, 2.0], [0.5, 0.7, 0.1, np.nan]])
    np.testing.assert_array_equal(ranks_of(means[0], True), stats.rankdata(-means[0], method="min"))
    np.testing.assert_array_equal(ranks_of(means[0], False), stats.rankdata(means[0], method="min"))
    assert ranks_of(means[1], True).tolist() == [2, 1, 3, 4]  # NaN ranks last


def test_rank_distribution_by_hand() -> None:
    boot = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    result = rank_distribution(boot, ["a", "b"], higher_is_better=True)
    assert result["a"]["p_rank1"] == 0.75 and result["b"]["p_rank1"] == 0.25
    assert result["a"]["median_rank"] == 1.0 and result["b"]["median_rank"] == 2.0


def test_ties_for_first_share_the_probability() -> None:
    boot = np.array([[1.0, 1.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 3.0, 2.0]])
    result = rank_distribution(boot, ["a", "b", "c"], higher_is_better=True)
    assert result["a"]["p_rank1"] == (0.5 + 1 + 1 / 3) / 4
    assert result["b"]["p_rank1"] == (0.5 + 1 / 3 + 1) / 4
    assert result["c"]["p_rank1"] == (1 / 3) / 4
    assert sum(r["p_rank1"] for r in result.values()) == 1.0


def test_kendall_between_scorers_matches_scipy_with_orientation() -> None:
    means = {"up": {"a": 1.0, "b": 2.0, "c": 3.0, "d": None}, "down": {"a": 3.0, "b": 1.0, "c": 2.0, "d": 0.0}}
    result = kendall_between_scorers(means, {"up": True, "down": False})[0]
    expected = stats.kendalltau([1.0, 2.0, 3.0], [-3.0, -1.0, -2.0])
    assert result["n"] == 3 and result["tau"] == pytest.approx(expected.statistic)
    assert result["p"] == pytest.approx(expected.pvalue)


# --- summaries -------------------------------------------------------------------------------------


def _frame(values: np.ndarray, scorer: str = "s") -> pd.DataFrame:
    rows = [(f"m{m}", "q", f"{p:03d}", "", s + 1, scorer, values[m, p, s])
            for m in range(values.shape[0]) for p in range(values.shape[1]) for s in range(values.shape[2])]
    return pd.DataFrame(rows, columns=["checkpoint", "suite", "case_id", "prompt", "seed", "scorer", "value"])


def test_summary_statistics_against_pandas() -> None:
    rng = np.random.default_rng(8)
    values = rng.normal(size=(2, 6, 5)) * np.arange(1, 7)[None, :, None]
    values[0, 3, 1] = np.nan
    frame = _frame(values)
    summary = summarize(frame)["m0"]["s"]
    mine = frame[frame.checkpoint == "m0"].dropna(subset=["value"])
    assert summary.mean == pytest.approx(mine["value"].mean())
    assert summary.pooled_std == pytest.approx(mine["value"].std(ddof=1))
    assert summary.seed_std == pytest.approx(mine.groupby("case_id")["value"].std(ddof=1).mean())
    assert summary.n == 29 and summary.missing == 1
    assert summary.ci95[0] < summary.mean < summary.ci95[1]
    assert seed_std(prompt_seed_matrix(frame[frame.checkpoint == "m0"])) == pytest.approx(summary.seed_std)
