"""Everything the analysis says about one suite: per checkpoint × scorer summaries with cluster-t intervals,
GhostReview's pool z-score, variance decomposition, paired comparisons, rank distributions, the confidence
set for the best, baseline-anchored scores, Kendall's τ between scorers and the composite ranking. The Holm
adjustments, the ranking choice and the verdict need every suite and are added by ``analyze.py``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ckptbench.analysis.best import best_set
from ckptbench.analysis.composite import composite_block
from ckptbench.analysis.cube import SuiteCube
from ckptbench.analysis.intervals import json_interval, ratio_means, t_interval
from ckptbench.analysis.joint import joint_weights, resampled_means
from ckptbench.analysis.paired import all_pairs, compare_pairs
from ckptbench.analysis.ranking import kendall_between_scorers, rank_distribution, ranks_of
from ckptbench.analysis.standard import ghostreview_standard
from ckptbench.analysis.summary import seed_std
from ckptbench.analysis.traits import ScorerTraits
from ckptbench.analysis.variance import variance_components


@dataclass(frozen=True)
class AnalysisSettings:
    resamples: int = 1000
    seed: int = 0
    baseline: str | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    composite: dict[str, float] = field(default_factory=dict)
    within_prompt: frozenset[str] = frozenset()
    rank_by: str | None = None  # a scorer, "composite", or None: the composite if weighted, else scorer_order[0]
    rank_by_source: str | None = None  # who asked for rank_by (the spec, or --rank-by)
    multiplicity: str = "per-scorer"  # Holm families: "per-scorer" or "run" (multiplicity.py)
    scorer_order: tuple[str, ...] = ()  # the spec's scorers.use: its first scorer leads by default

    def as_dict(self) -> dict[str, Any]:
        return {"bootstrap_resamples": self.resamples, "analysis_seed": self.seed, "baseline": self.baseline,
                "thresholds": dict(self.thresholds), "composite_weights": dict(self.composite),
                "within_prompt_scorers": sorted(self.within_prompt), "rank_by": self.rank_by,
                "multiplicity": self.multiplicity}


def analyze_suite(cube: SuiteCube, traits: Mapping[str, ScorerTraits], settings: AnalysisSettings,
                  excluded: np.ndarray | None = None) -> dict[str, Any]:
    """The suite's analysis; ``excluded`` (checkpoints, cases) removes cells from one checkpoint only
    (NoTM), after the pool z-scores are computed over every cell, as GhostReview does."""
    weights = joint_weights(len(cube.cases), len(cube.seeds), settings.resamples, settings.seed, cube.suite)
    scorers: dict[str, Any] = {}
    rank_basis: dict[str, dict[str, float | None]] = {}
    for scorer in cube.scorers:
        raw = cube.scorer_values(scorer)
        values = raw if excluded is None else np.where(excluded[:, :, None], np.nan, raw)
        scorers[scorer], rank_basis[scorer] = _analyze_scorer(cube, raw, values, traits[scorer], settings, weights,
                                                              excluded)
    directions = {name: traits[name].higher_is_better for name in cube.scorers}
    return {
        "checkpoints": list(cube.checkpoints),
        "cases": len(cube.cases),
        "seeds": list(cube.seeds),
        "scorers": scorers,
        "kendall_tau": kendall_between_scorers(rank_basis, directions),
        "composite": composite_block(cube, scorers, traits, settings, weights, excluded),
    }


def _analyze_scorer(cube: SuiteCube, raw: np.ndarray, values: np.ndarray, traits: ScorerTraits,
                    settings: AnalysisSettings, weights: np.ndarray, excluded: np.ndarray | None
                    ) -> tuple[dict[str, Any], dict[str, float | None]]:
    names = cube.checkpoints
    flat = values.reshape(len(names), -1)
    low, high = t_interval(ratio_means(values))
    standard = ghostreview_standard(raw, excluded)
    good = _good_rates(values, traits)
    active = [i for i in range(len(names)) if np.isfinite(flat[i]).any()]
    summary: dict[str, Any] = {}
    for i, name in enumerate(names):
        finite = flat[i][np.isfinite(flat[i])]
        planned = cube.planned[i] if excluded is None else cube.planned[i] & ~excluded[i][:, None]
        summary[name] = {
            "n": int(finite.size),
            "missing": int((planned & ~np.isfinite(values[i])).sum()),
            "excluded": int((cube.planned[i] & excluded[i][:, None]).sum()) if excluded is not None else 0,
            "mean": _num(finite.mean()) if finite.size else None,
            "ci95": json_interval(low[i], high[i]),
            "seed_std": _num(seed_std(values[i])),
            "pooled_std": _num(np.std(finite, ddof=1)) if finite.size > 1 else None,
            "good_rate": good[i],
            "ghostreview_standard": _num(standard[i]),
        }

    # Preference scores only mean something within a prompt: rank them on the cells every checkpoint has.
    basis_values = flat[active]
    if traits.within_prompt and active:
        common = np.isfinite(basis_values).all(axis=0)
        basis_values = np.where(common[None, :], basis_values, np.nan)
    with np.errstate(invalid="ignore"):
        basis_means = [float(np.nanmean(row)) if np.isfinite(row).any() else np.nan for row in basis_values]
    point_ranks = ranks_of(np.array(basis_means), traits.higher_is_better) if active else np.array([])
    active_names = [names[i] for i in active]
    ranks = rank_distribution(resampled_means(weights, basis_values), active_names, traits.higher_is_better)
    for position, name in enumerate(active_names):
        summary[name]["rank"] = int(point_ranks[position])
        summary[name]["rank_mean"] = _num(basis_means[position])
    sign = 1.0 if traits.higher_is_better else -1.0
    leader = active_names[int(np.argmin(point_ranks))] if active else None
    result = {
        **traits.as_dict(),
        "rank_basis": "mean over the cells every checkpoint has" if traits.within_prompt else "mean",
        "summary": summary,
        "ranks": ranks,
        "best_set": best_set([(sign, values[active])], active_names, leader) if leader else None,
        "variance": variance_components(values),
        "pairs": all_pairs(values[active], active_names, traits.higher_is_better),
        "baseline": _baseline(values, names, settings.baseline, traits),
    }
    return result, {name: _num(mean) for name, mean in zip(active_names, basis_means, strict=True)}


def _good_rates(values: np.ndarray, traits: ScorerTraits) -> list[dict[str, Any] | None]:
    if traits.threshold is None:
        return [None] * values.shape[0]
    with np.errstate(invalid="ignore"):
        hits = values >= traits.threshold if traits.higher_is_better else values <= traits.threshold
    indicator = np.where(np.isfinite(values), hits.astype(np.float64), np.nan)
    rates = ratio_means(indicator)
    low, high = t_interval(rates)
    return [{"rate": float(rates.estimate[i]), "ci95": json_interval(low[i], high[i], clip=(0.0, 1.0)),
             "threshold": traits.threshold} if np.isfinite(rates.estimate[i]) else None
            for i in range(values.shape[0])]


def _baseline(values: np.ndarray, names: tuple[str, ...], baseline: str | None, traits: ScorerTraits
              ) -> dict[str, Any] | None:
    """Each checkpoint minus the baseline on the cells both have: depends on those two checkpoints only.
    The Holm adjustment over the baseline family is added by ``multiplicity.py``."""
    if baseline is None or baseline not in names:
        return None
    base = names.index(baseline)
    keys = ("mean_diff", "ci95", "n_cells", "excluded_cells", "win_rate", "p_cells", "p_cases")
    compared = compare_pairs(values, [(i, base) for i in range(len(names))], traits.higher_is_better)
    anchored = {name: {key: entry[key] for key in keys} for name, entry in zip(names, compared, strict=True)}
    anchored[baseline].update(p_cells=None, p_cases=None)  # the baseline against itself is no test
    return {"checkpoint": baseline, "scores": anchored}


def _num(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
