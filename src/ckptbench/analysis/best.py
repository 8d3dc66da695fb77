"""A confidence set for the best checkpoint, and how many prompts would separate the leader from the rest.

The set holds the leader (the checkpoint ranked first) and every checkpoint not significantly worse than
it: for each other checkpoint i, the gap "leader − i" (mean over the cells both have, oriented so that
larger is better) is tested with a one-sided cluster t-test (``intervals.py``) at level α / (k − 1),
Bonferroni over the k − 1 comparisons with the leader. Error rate: the set misses the checkpoint that is
truly best for the population of prompts like these with probability at most α (the truly best one can
only drop out if some comparison of another checkpoint with it rejects a true null, and those are k − 1
tests at α / (k − 1) each). It is the "multiple comparisons with the best" idea with the simple
Bonferroni bound; conservative, and it needs no assumption about how the checkpoints' errors correlate.

The bootstrap share of resamples in which a checkpoint ranks first (``p_rank1``) is something else: with
equal checkpoints the apparent leader often takes most resamples, so it is reported as a frequency and
never read as "the probability of being best"; only this set says which checkpoints could be the best.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize, stats

from ckptbench.analysis.intervals import Linear, p_greater_than_zero, ratio_means, standard_error, weighted_sum

ALPHA = 0.05
POWER = 0.8
MAX_PROMPTS = 100_000  # beyond this the estimate says "more than", not a number

METHOD = ("checkpoints not significantly worse than the leader: one-sided paired cluster t-test of each gap "
          "(per-prompt totals, t with prompts − 1 degrees of freedom) at α / (k − 1), Bonferroni over the "
          "k − 1 comparisons with the leader; the set contains the truly best checkpoint (for the population "
          "of prompts like these) with probability ≥ 1 − α")


def gaps(components: Sequence[tuple[float, np.ndarray]], leader: int) -> Linear:
    """Leader − each checkpoint (rows in checkpoint order; the leader's own row is 0) for a score that is
    Σ weight × component, each component a (checkpoints, cases, seeds) array oriented so larger is better."""
    parts = []
    for weight, values in components:
        parts.append((weight, ratio_means(values[leader][None] - values)))
    return weighted_sum(parts)


def best_set(components: Sequence[tuple[float, np.ndarray]], names: Sequence[str], leader: str,
             alpha: float = ALPHA) -> dict[str, Any]:
    """The confidence set for the best among ``names`` (see the module docstring), with the prompts that
    would be needed to separate the leader from each member."""
    lead = list(names).index(leader)
    difference = gaps(components, lead)
    comparisons = max(len(names) - 1, 1)
    level = alpha / comparisons
    p_values = p_greater_than_zero(difference)
    error, freedom = standard_error(difference)
    members, rows = [leader], []
    for i, name in enumerate(names):
        if i == lead:
            continue
        gap, p = float(difference.estimate[i]), float(p_values[i])
        excluded = bool(np.isfinite(p) and p < level)
        needed = None if excluded else prompts_needed(gap, float(error[i]), float(freedom[i]), level)
        rows.append({"checkpoint": name, "gap": _num(gap), "p_one_sided": _num(p), "in_set": not excluded,
                     "prompts_needed": needed})
        if not excluded:
            members.append(name)
    return {"leader": leader, "members": members, "alpha": alpha, "per_comparison_alpha": level,
            "method": METHOD, "comparisons": rows}


def prompts_needed(gap: float, error: float, freedom: float, level: float, power: float = POWER) -> int | None:
    """Prompts for the one-sided t-test at ``level`` to find a gap this size with ``power``, if the true gap
    were the observed one and per-prompt differences kept their observed spread (a rough guide: the
    observed gap of a leader is optimistic, so read it as "at least about").

    The spread per prompt is error × √G (G = freedom + 1 cases); power from the noncentral t (scipy).
    None when no number of prompts would do (a gap ≤ 0) or more than ``MAX_PROMPTS`` are needed."""
    if not (np.isfinite(gap) and np.isfinite(error) and np.isfinite(freedom)) or gap <= 0:
        return None
    spread = error * np.sqrt(freedom + 1.0)
    if spread == 0:
        return int(freedom + 1)

    def shortfall(prompts: float) -> float:
        critical = stats.t.ppf(1.0 - level, prompts - 1.0)
        return float(stats.nct.sf(critical, prompts - 1.0, gap * np.sqrt(prompts) / spread)) - power

    if shortfall(MAX_PROMPTS) < 0:
        return None
    if shortfall(2.0) >= 0:
        return 2
    return int(np.ceil(optimize.brentq(shortfall, 2.0, MAX_PROMPTS, xtol=0.5)))


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
