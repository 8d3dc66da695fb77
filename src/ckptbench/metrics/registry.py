"""Scorers by short name. Each scorer module registers its class here."""

from __future__ import annotations

import difflib

from ckptbench.errors import SpecError
from ckptbench.metrics.aesthetic import LaionAestheticV2
from ckptbench.metrics.base import Scorer
from ckptbench.metrics.clip_score import ClipScore
from ckptbench.spec import BenchmarkSpec, ScorerOptions

SCORERS: dict[str, type[Scorer]] = {cls.name: cls for cls in (LaionAestheticV2, ClipScore)}


def scorer_class(name: str) -> type[Scorer]:
    if name in SCORERS:
        return SCORERS[name]
    close = difflib.get_close_matches(name, SCORERS, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise SpecError(f"unknown scorer '{name}'; {hint}known scorers: {', '.join(sorted(SCORERS))}.")


def create_scorer(name: str, options: ScorerOptions) -> Scorer:
    return scorer_class(name)(options)


def check_scorer_names(spec: BenchmarkSpec) -> None:
    where = f"{spec.spec_path}: scorers.use: " if spec.spec_path else ""
    for name in spec.scorers.use:
        try:
            scorer_class(name)
        except SpecError as error:
            raise SpecError(where + str(error)) from None
