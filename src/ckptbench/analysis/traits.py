"""What the analysis needs to know about a scorer beyond its values: direction, good-image threshold τ,
and whether its values are comparable across prompts.

Good-image thresholds are conventions, not facts; each default says where it comes from, and every
one can be overridden (or set for a scorer that has none) in the spec's ``[analysis.thresholds]``.
A scorer without a threshold gets no good-image rate rather than an invented one.
"""

from __future__ import annotations

from dataclasses import dataclass

# scorer id (before any ":tag") → (τ, why)
DEFAULT_THRESHOLDS: dict[str, tuple[float, str]] = {
    "laion-aesthetic-v2": (6.5, "the LAION-Aesthetics V2 '6.5+' subset used to fine-tune Stable Diffusion"),
    "kenjiqq-rating": (5.5, "midpoint of the 1-10 AI Horde aesthetic rating scale the head is trained on"),
    "kenjiqq-artifacts": (2.5, "midpoint of the 0-5 AI Horde artifact scale (0 = none, 5 = ruined); "
                               "lower is better, so a good image scores at most τ"),
    "imagereward": (0.0, "ImageReward is standardised on its training set, so 0 is its average image"),
}

# Preference models score an image against *its* prompt; their offsets differ from prompt to prompt,
# so their values are compared only within a prompt (paired, or on the cells every checkpoint shares).
WITHIN_PROMPT_SCORERS = frozenset({"hps-v2", "hps-v2.1", "pickscore", "imagereward"})

# Used only when the store has no scorer record (e.g. an imported column of an unknown scorer).
LOWER_IS_BETTER = frozenset({"kenjiqq-artifacts", "style-gram"})


def base_id(scorer: str) -> str:
    return scorer.split(":", 1)[0]


@dataclass(frozen=True)
class ScorerTraits:
    name: str
    higher_is_better: bool
    threshold: float | None
    threshold_source: str | None
    within_prompt: bool

    def as_dict(self) -> dict[str, object]:
        return {"higher_is_better": self.higher_is_better, "threshold": self.threshold,
                "threshold_source": self.threshold_source, "within_prompt_only": self.within_prompt}


def scorer_traits(name: str, higher_is_better: bool | None, thresholds: dict[str, float],
                  within_prompt: frozenset[str] | set[str] = frozenset()) -> ScorerTraits:
    """Traits of ``name``; spec overrides (by full name, then by base id) win over the defaults."""
    direction = higher_is_better if higher_is_better is not None else base_id(name) not in LOWER_IS_BETTER
    if name in thresholds or base_id(name) in thresholds:
        threshold = thresholds.get(name, thresholds.get(base_id(name)))
        source = "spec [analysis.thresholds]"
    elif base_id(name) in DEFAULT_THRESHOLDS:
        threshold, source = DEFAULT_THRESHOLDS[base_id(name)]
        source = f"default: {source}"
    else:
        threshold, source = None, None
    preference = base_id(name) in WITHIN_PROMPT_SCORERS or name in within_prompt or base_id(name) in within_prompt
    return ScorerTraits(name, direction, threshold, source, preference)
