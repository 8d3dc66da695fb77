"""What a suite says in one sentence: which ranking it uses, who leads, whether the lead is real, and a warning
when the suite has too few prompts for the per-prompt Wilcoxon test ever to be significant."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from scipy import stats

from ckptbench.analysis.best import MAX_PROMPTS
from ckptbench.analysis.composite import COMPOSITE
from ckptbench.analysis.human_ranking import HUMAN, human_label

SIGNIFICANCE = 0.05
# The confidence set for the best (and so the verdict) uses a t-test on prompt means, which can reach 0.05 with
# few prompts where the rank test cannot: said, so the verdict and the warning do not seem to contradict.
_T_TEST_CAVEAT = (" The confidence set for the best uses a t-test on the prompt means instead, which can separate "
                  "checkpoints with few prompts but then leans on those means being roughly normal.")


def choose_ranking(rank_by: str | None, source: str | None, composite: Mapping[str, float],
                   scorer_order: Sequence[str], scorers: Sequence[str]) -> dict[str, str]:
    """The run's ranking: ``rank_by`` as asked, else the composite when weights are given, else the first
    scorer of ``scorer_order`` (the spec's scorers.use) that was scored."""
    if rank_by is not None:
        return {"by": rank_by, "source": source or "spec [analysis] rank_by"}
    if composite:
        return {"by": COMPOSITE, "source": "default: the spec gives composite weights"}
    first = next((name for name in scorer_order if name in scorers), min(scorers, default=""))
    return {"by": first, "source": "default: the first scorer the spec names"}


def suite_ranking(ranking: Mapping[str, str], block: Mapping[str, Any], scorer_order: Sequence[str]) -> dict[str, str]:
    """The ranking one suite (or NoTM view) uses: the run's, unless the suite lacks that scorer or composite."""
    scorers = list(block.get("scorers") or {})
    wanted = ranking["by"]
    if wanted == COMPOSITE and (block.get("composite") or {}).get("scores"):
        return {**ranking, "label": _composite_label(block["composite"])}
    if wanted == HUMAN and block.get("human"):
        return {**ranking, "label": human_label(block["human"])}
    if wanted in scorers:
        return {**ranking, "label": wanted}
    fallback = next((name for name in scorer_order if name in scorers), min(scorers, default=""))
    missing = {COMPOSITE: "no composite", HUMAN: "no arena votes"}.get(wanted, f"no {wanted} scores")
    return {"by": fallback, "label": fallback, "source": f"{ranking['source']}; this suite has {missing}, so "
                                                          f"it is ranked by {fallback}"}


def verdict(block: Mapping[str, Any], ranking: Mapping[str, str]) -> dict[str, Any]:
    """The one-sentence verdict of a suite (or NoTM view) on its ranking, with its parts and warnings."""
    by = ranking["by"]
    if by == HUMAN:
        return human_verdict(block["human"], ranking["label"], int(block.get("cases") or 0))
    source: Mapping[str, Any] = block["composite"] if by == COMPOSITE else block["scorers"][by]
    # The composite's marks are the scorers' pairwise tests: their (largest) Holm family decides the warning.
    tests = max([int((scorer.get("holm_family") or {}).get("tests", 0)) for scorer in block["scorers"].values()]
                if by == COMPOSITE else [int((source.get("holm_family") or {}).get("tests", 0))])
    prompts = int(block.get("cases") or 0)
    warnings = too_few_prompts(prompts, tests)
    chosen = source.get("best_set")
    if not chosen:
        return {"text": f"No checkpoint has {ranking['label']} values in this suite.", "best_set": [],
                "leader": None, "prompts": prompts, "prompts_needed": None, "warnings": warnings}
    leader, members = chosen["leader"], list(chosen["members"])
    lead = source["scores"][leader] if by == COMPOSITE else source["summary"][leader]
    scored = _estimate(lead.get("value" if by == COMPOSITE else "mean"), lead.get("ci95"))
    others = [name for name in members if name != leader]
    needed = [row["prompts_needed"] for row in chosen["comparisons"] if row["in_set"]]
    prompts_needed = None if not needed or None in needed else max(needed)
    if not others:
        text = (f"{leader} is best on {ranking['label']} ({scored}): every other checkpoint is significantly "
                f"worse with {prompts} prompts (95% confidence set for the best).")
    else:
        more = (f"about {prompts_needed:,} prompts would be needed to tell them apart (80% power, if the true "
                f"gaps were the observed ones)" if prompts_needed is not None else
                f"no realistic number of prompts would tell them apart (the observed gaps would need more than "
                f"{MAX_PROMPTS:,})")
        text = (f"{leader} leads on {ranking['label']} ({scored}), but {_names(others)} cannot be told apart from "
                f"it with {prompts} prompts — {more}.")
    return {"text": text, "ranking": by, "leader": leader, "best_set": members, "prompts": prompts,
            "prompts_needed": prompts_needed, "warnings": warnings}


def human_verdict(human: Mapping[str, Any], label: str, prompts: int) -> dict[str, Any]:
    """The verdict on the ranking by arena votes (``arena/analysis.py``: θ, its interval and the best set)."""
    chosen = human.get("best_set") or {}
    if not chosen:
        return {"text": "No checkpoint of this suite has arena votes.", "ranking": HUMAN, "best_set": [],
                "leader": None, "prompts": prompts, "prompts_needed": None, "warnings": []}
    leader, members = str(chosen["leader"]), [str(name) for name in chosen["members"]]
    lead = next(row for row in human["checkpoints"] if row["checkpoint"] == leader)
    low, high = lead["ci95"]
    scored = f"θ {lead['theta']:+.2f} [{low:+.2f}, {high:+.2f}], Elo {lead['elo']:.0f}"
    votes = int(human.get("votes") or 0)
    others = [name for name in members if name != leader]
    if not others:
        text = (f"{leader} is best on {label} ({scored}): every other checkpoint is significantly less preferred "
                f"with {votes:,} votes (95% confidence set for the best).")
    else:
        text = (f"{leader} leads on {label} ({scored}), but {_names(others)} cannot be told apart from it with "
                f"{votes:,} votes — more votes, on more prompts, would be needed.")
    return {"text": text, "ranking": HUMAN, "leader": leader, "best_set": members, "prompts": prompts,
            "prompts_needed": None, "warnings": []}


def too_few_prompts(prompts: int, tests: int) -> list[str]:
    """Warnings when the per-prompt Wilcoxon test, after Holm over ``tests`` comparisons, can never reach p <
    0.05 with this many prompts (its smallest p-value is that of prompts all pointing the same way)."""
    if prompts < 1:
        return []
    floor = smallest_wilcoxon_p(prompts)
    if floor >= SIGNIFICANCE:
        return [f"With {prompts} prompts the per-prompt Wilcoxon test can never give p < {SIGNIFICANCE} (its "
                f"smallest possible p-value is {floor:.3g}), so no ▲/▼ mark between two checkpoints can show a "
                f"significant difference; at least {prompts_for_significance(1)} prompts are needed"
                + (f" ({prompts_for_significance(tests)} with the Holm correction over {tests} tests)"
                   if tests > 1 else "") + "." + _T_TEST_CAVEAT]
    if tests > 1 and floor * tests >= SIGNIFICANCE:
        return [f"With {prompts} prompts and the Holm correction over {tests} tests, no ▲/▼ mark between two "
                f"checkpoints can show a significant difference (the smallest possible adjusted p-value is "
                f"{min(1.0, floor * tests):.3g}); at least {prompts_for_significance(tests)} prompts are needed."
                + _T_TEST_CAVEAT]
    return []


@lru_cache(maxsize=64)
def smallest_wilcoxon_p(prompts: int) -> float:
    """The two-sided p-value scipy's Wilcoxon test gives when every per-prompt difference has the same sign."""
    return float(stats.wilcoxon(np.arange(1.0, prompts + 1.0)).pvalue)


def prompts_for_significance(tests: int) -> int:
    """The fewest prompts with which the smallest Holm-adjusted p-value over ``tests`` tests is below 0.05."""
    prompts = 1
    while smallest_wilcoxon_p(prompts) * max(tests, 1) >= SIGNIFICANCE:
        prompts += 1
    return prompts


def _composite_label(composite: Mapping[str, Any]) -> str:
    weights = ", ".join(f"{w:g} × {name}" for name, w in composite["weights"].items())
    kind = "equal weights" if composite.get("equal_weights") else "weights"
    return f"the composite score ({kind}: {weights})"


def _names(names: Sequence[str], shown: int = 4) -> str:
    if len(names) > shown + 1:
        return ", ".join(names[:shown]) + f" and {len(names) - shown} others"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def _estimate(mean: float | None, interval: Sequence[float | None] | None) -> str:
    if mean is None:
        return "–"
    low, high = (interval or [None, None])[:2]
    if low is None or high is None:
        return _format(mean, 3)
    width = high - low
    digits = 3 if width <= 0 else min(8, max(0, 2 - math.floor(math.log10(width))))
    return f"{_format(mean, digits)} [{_format(low, digits)}, {_format(high, digits)}]"


def _format(value: float, digits: int) -> str:
    """Large values (unnormalised style losses, ~10⁹) as "4.305×10⁹", which reads, not "4.305e+09"."""
    if abs(value) < 1e5:
        return f"{value:.{digits}f}"
    mantissa, power = f"{value:.3e}".split("e")
    return f"{float(mantissa):.4g}×10{str(int(power)).translate(_SUPERSCRIPT)}"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
