"""Everything the analysis says about one suite: per checkpoint × scorer summaries, GhostReview's pool
z-score, variance decomposition, paired comparisons, rank distributions, baseline-anchored scores,
Kendall's τ between scorers and the composite ranking."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ckptbench.analysis.bootstrap import finite_interval
from ckptbench.analysis.cube import SuiteCube
from ckptbench.analysis.joint import joint_weights, resampled_means
from ckptbench.analysis.paired import all_pairs, compare_pair, pair_bootstrap, paired_p_values
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

    def as_dict(self) -> dict[str, Any]:
        return {"bootstrap_resamples": self.resamples, "analysis_seed": self.seed, "baseline": self.baseline,
                "thresholds": dict(self.thresholds), "composite_weights": dict(self.composite),
                "within_prompt_scorers": sorted(self.within_prompt)}


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
        scorers[scorer], rank_basis[scorer] = _analyze_scorer(cube, scorer, raw, values, traits[scorer], settings,
                                                              weights, excluded)
    directions = {name: traits[name].higher_is_better for name in cube.scorers}
    return {
        "checkpoints": list(cube.checkpoints),
        "cases": len(cube.cases),
        "seeds": list(cube.seeds),
        "scorers": scorers,
        "kendall_tau": kendall_between_scorers(rank_basis, directions),
        "composite": _composite(cube, scorers, traits, settings, weights, excluded),
    }


def _analyze_scorer(cube: SuiteCube, scorer: str, raw: np.ndarray, values: np.ndarray, traits: ScorerTraits,
                    settings: AnalysisSettings, weights: np.ndarray, excluded: np.ndarray | None
                    ) -> tuple[dict[str, Any], dict[str, float | None]]:
    names = cube.checkpoints
    flat = values.reshape(len(names), -1)
    boot = resampled_means(weights, flat)
    standard = ghostreview_standard(raw, excluded)
    good = _good_rates(values, traits, weights)
    active = [i for i in range(len(names)) if np.isfinite(flat[i]).any()]
    summary: dict[str, Any] = {}
    for i, name in enumerate(names):
        finite = flat[i][np.isfinite(flat[i])]
        planned = cube.planned[i] if excluded is None else cube.planned[i] & ~excluded[i][:, None]
        entry: dict[str, Any] = {
            "n": int(finite.size),
            "missing": int((planned & ~np.isfinite(values[i])).sum()),
            "excluded": int((cube.planned[i] & excluded[i][:, None]).sum()) if excluded is not None else 0,
            "mean": _num(finite.mean()) if finite.size else None,
            "ci95": finite_interval(boot[:, i]) if finite.size else [None, None],
            "seed_std": _num(seed_std(values[i])),
            "pooled_std": _num(np.std(finite, ddof=1)) if finite.size > 1 else None,
            "good_rate": good[i],
            "ghostreview_standard": _num(standard[i]),
        }
        summary[name] = entry

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
    result = {
        **traits.as_dict(),
        "rank_basis": "mean over the cells every checkpoint has" if traits.within_prompt else "mean",
        "summary": summary,
        "ranks": ranks,
        "variance": variance_components(values),
        "pairs": all_pairs(values[active], active_names, weights, traits.higher_is_better),
        "baseline": _baseline(values, names, settings.baseline, weights, traits),
    }
    return result, {name: _num(mean) for name, mean in zip(active_names, basis_means, strict=True)}


def _good_rates(values: np.ndarray, traits: ScorerTraits, weights: np.ndarray) -> list[dict[str, Any] | None]:
    if traits.threshold is None:
        return [None] * values.shape[0]
    flat = values.reshape(values.shape[0], -1)
    with np.errstate(invalid="ignore"):
        hits = flat >= traits.threshold if traits.higher_is_better else flat <= traits.threshold
    indicator = np.where(np.isfinite(flat), hits.astype(np.float64), np.nan)
    boot = resampled_means(weights, indicator)
    rates = []
    for i, row in enumerate(indicator):
        finite = row[np.isfinite(row)]
        rates.append({"rate": float(finite.mean()), "ci95": finite_interval(boot[:, i]),
                      "threshold": traits.threshold} if finite.size else None)
    return rates


def _baseline(values: np.ndarray, names: tuple[str, ...], baseline: str | None, weights: np.ndarray,
              traits: ScorerTraits) -> dict[str, Any] | None:
    """Each checkpoint minus the baseline on the cells both have: depends on those two checkpoints only."""
    if baseline is None or baseline not in names:
        return None
    base = names.index(baseline)
    boot = pair_bootstrap(values, [(i, base) for i in range(len(names))], weights)
    anchored = {}
    p_cells, p_cases = paired_p_values([values[i] - values[base] for i in range(len(names))])
    for i, name in enumerate(names):
        entry = compare_pair(values[i], values[base], boot[:, i], traits.higher_is_better)
        anchored[name] = {key: entry[key] for key in ("mean_diff", "ci95", "n_cells", "excluded_cells", "win_rate")}
        anchored[name].update(p_cells=p_cells[i], p_cases=p_cases[i])
    return {"checkpoint": baseline, "scores": anchored}


def _composite(cube: SuiteCube, scorers: Mapping[str, Any], traits: Mapping[str, ScorerTraits],
               settings: AnalysisSettings, weights: np.ndarray, excluded: np.ndarray | None) -> dict[str, Any] | None:
    used = {name: w for name, w in settings.composite.items() if name in scorers}
    if not used:
        return None
    names = cube.checkpoints
    baseline = settings.baseline if settings.baseline in names else None
    parts: dict[str, np.ndarray] = {}
    boot_parts: dict[str, np.ndarray] = {}
    scales: dict[str, float | None] = {}
    for scorer in used:
        sign = 1.0 if traits[scorer].higher_is_better else -1.0
        summary = scorers[scorer]["summary"]
        if baseline is None:
            parts[scorer] = sign * np.array([_nan(summary[n]["ghostreview_standard"]) for n in names])
            continue
        raw = cube.scorer_values(scorer)
        values = raw if excluded is None else np.where(excluded[:, :, None], np.nan, raw)
        scale = summary[baseline]["seed_std"] or summary[baseline]["pooled_std"]
        scales[scorer] = scale
        if not scale:
            continue
        base = names.index(baseline)
        differences = (values - values[base][None]).reshape(len(names), -1)
        with np.errstate(invalid="ignore"):
            parts[scorer] = sign * np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan
                                             for row in differences]) / scale
        boot_parts[scorer] = sign * resampled_means(weights, differences) / scale
    total = sum(used[s] * parts[s] for s in parts)
    result: dict[str, Any] = {
        "weights": used,
        "ignored_weights": {name: w for name, w in settings.composite.items() if name not in scorers},
        "basis": ("baseline-anchored: Σ weight × (mean difference to the baseline on shared cells) / the "
                  "baseline's seed SD, oriented so that larger is better" if baseline else
                  "pool-relative (no baseline set): Σ weight × GhostReview standard score, oriented so that "
                  "larger is better; it changes when the pool changes"),
        "baseline": baseline,
        "scales": scales if baseline else None,
    }
    if not parts:
        return {**result, "scores": None}
    points = np.asarray(total, dtype=np.float64)
    order = ranks_of(points, True)
    scores = {name: {"value": _num(points[i]), "rank": int(order[i])} for i, name in enumerate(names)}
    if baseline and boot_parts:
        boot_total = sum(used[s] * boot_parts[s] for s in boot_parts)
        distribution = rank_distribution(np.asarray(boot_total), names, True)
        for i, name in enumerate(names):
            scores[name]["ci95"] = finite_interval(np.asarray(boot_total)[:, i])
            scores[name].update(distribution[name])
    return {**result, "scores": scores}


def _num(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def _nan(value: float | None) -> float:
    return float("nan") if value is None else float(value)
