"""The composite score of a suite: a weighted sum of its scorers, each oriented so that larger is better.

With a baseline: Σ weight × (mean difference to the baseline on shared cells) / the baseline's seed SD —
pool-independent, with a cluster-t interval and a bootstrap rank distribution. Without one: Σ weight ×
GhostReview standard score (pool z-scores), labelled pool-relative. Weights come from the spec's
``[analysis] composite``; ranking by the composite without weights (``rank_by = "composite"``) weighs every
scorer of the suite equally and says so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ckptbench.analysis.best import best_set
from ckptbench.analysis.cube import SuiteCube
from ckptbench.analysis.intervals import json_interval, ratio_means, t_interval, weighted_sum
from ckptbench.analysis.joint import resampled_means
from ckptbench.analysis.ranking import rank_distribution, ranks_of
from ckptbench.analysis.standard import pool_z_scores
from ckptbench.analysis.traits import ScorerTraits

if TYPE_CHECKING:
    from ckptbench.analysis.suite import AnalysisSettings

COMPOSITE = "composite"


def composite_weights(settings: AnalysisSettings, scorers: Mapping[str, Any]) -> tuple[dict[str, float], bool]:
    """(weights of the suite's scorers, whether they are the equal weights of an unweighted ``rank_by``)."""
    used = {name: w for name, w in settings.composite.items() if name in scorers}
    if used or settings.composite or settings.rank_by != COMPOSITE:
        return used, False
    return {name: 1.0 for name in scorers}, True


def composite_block(cube: SuiteCube, scorers: Mapping[str, Any], traits: Mapping[str, ScorerTraits],
                    settings: AnalysisSettings, weights: np.ndarray, excluded: np.ndarray | None
                    ) -> dict[str, Any] | None:
    used, equal = composite_weights(settings, scorers)
    if not used:
        return None
    names = cube.checkpoints
    baseline = settings.baseline if settings.baseline in names else None
    base = names.index(baseline) if baseline else -1
    components: list[tuple[float, np.ndarray]] = []  # (weight, per-cell values), oriented and scaled
    scales: dict[str, float | None] = {}
    for scorer in used:
        sign = 1.0 if traits[scorer].higher_is_better else -1.0
        raw = cube.scorer_values(scorer)
        values = raw if excluded is None else np.where(excluded[:, :, None], np.nan, raw)
        if baseline is None:
            standard = pool_z_scores(raw)
            if excluded is not None:
                standard = np.where(excluded[:, :, None], np.nan, standard)
            components.append((used[scorer] * sign, standard))
            continue
        summary = scorers[scorer]["summary"]
        scale = summary[baseline]["seed_std"] or summary[baseline]["pooled_std"]
        scales[scorer] = scale
        if not scale:
            continue
        components.append((used[scorer] * sign / scale, values - values[base][None]))
    result: dict[str, Any] = {
        "weights": used,
        "equal_weights": equal,
        "ignored_weights": {name: w for name, w in settings.composite.items() if name not in scorers},
        "basis": ("baseline-anchored: Σ weight × (mean difference to the baseline on shared cells) / the "
                  "baseline's seed SD, oriented so that larger is better" if baseline else
                  "pool-relative (no baseline set): Σ weight × GhostReview standard score, oriented so that "
                  "larger is better; it changes when the pool changes"),
        "baseline": baseline,
        "scales": scales if baseline else None,
    }
    if not components:
        return {**result, "scores": None}
    total = weighted_sum([(w, ratio_means(values)) for w, values in components])
    order = ranks_of(total.estimate, True)
    scores = {name: {"value": _num(total.estimate[i]), "rank": int(order[i])} for i, name in enumerate(names)}
    if baseline:
        low, high = t_interval(total)
        boot = sum(w * resampled_means(weights, values.reshape(len(names), -1)) for w, values in components)
        distribution = rank_distribution(np.asarray(boot), list(names), True)
        for i, name in enumerate(names):
            scores[name]["ci95"] = json_interval(low[i], high[i])
            scores[name].update(distribution[name])
    ranked = [i for i in range(len(names)) if np.isfinite(total.estimate[i])]
    if ranked:
        leader = names[min(ranked, key=lambda i: order[i])]
        kept = [names[i] for i in ranked]
        result["best_set"] = best_set([(w, values[ranked]) for w, values in components], kept, leader)
    return {**result, "scores": scores}


def _num(value: Any) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
