"""Scorers by id (``name`` or ``name:tag``). Each scorer module's classes are listed here."""

from __future__ import annotations

from ckptbench.errors import SpecError
from ckptbench.metrics.aesthetic import LaionAestheticV2
from ckptbench.metrics.base import ScorerBase
from ckptbench.metrics.clip_score import ClipCosine, ClipScore
from ckptbench.metrics.distribution import CMMD, FID, KID
from ckptbench.metrics.imagereward import ImageReward
from ckptbench.metrics.kenjiqq import KenjiqqArtifacts, KenjiqqRating
from ckptbench.metrics.preference import HPSv2, HPSv21, PickScore
from ckptbench.metrics.style import StyleClip, StyleGram, StyleGramGhostReview
from ckptbench.metrics.vqascore import VQAScore
from ckptbench.spec import BenchmarkSpec, ScorerOptions
from ckptbench.textfiles import closest

SCORERS: dict[str, type[ScorerBase]] = {cls.name: cls for cls in (
    LaionAestheticV2, KenjiqqRating, KenjiqqArtifacts, ClipScore, ClipCosine, HPSv2, HPSv21, PickScore,
    StyleGram, StyleGramGhostReview, StyleClip, KID, FID, CMMD, ImageReward, VQAScore)}


def scorer_class(name: str) -> type[ScorerBase]:
    if name in SCORERS:
        return SCORERS[name]
    close = closest(name, SCORERS, cutoff=0.5)
    hint = f"did you mean '{close}'? " if close else ""
    raise SpecError(f"unknown scorer '{name}'; {hint}known scorers: {', '.join(sorted(SCORERS))}.")


def create_scorer(name: str, options: ScorerOptions) -> ScorerBase:
    return scorer_class(name)(options)


def check_scorer_names(spec: BenchmarkSpec) -> None:
    where = f"{spec.spec_path}: scorers.use: " if spec.spec_path else ""
    for name in spec.scorers.use:
        try:
            scorer_class(name)
        except SpecError as error:
            raise SpecError(where + str(error)) from None
