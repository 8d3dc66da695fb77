"""The analysis of a run: every suite of the tidy score table, with style and LoRA matrices and NoTM."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ckptbench.analysis.cube import SuiteCube, build_cube
from ckptbench.analysis.multiplicity import apply_holm, views
from ckptbench.analysis.suite import AnalysisSettings, analyze_suite
from ckptbench.analysis.traits import ScorerTraits, scorer_traits
from ckptbench.analysis.verdict import choose_ranking, suite_ranking, verdict
from ckptbench.suites.notm import CheckpointIdentity, notm_exclusions

CaseKey = tuple[str, str]  # (suite, case id)


def analyze(frame: pd.DataFrame, settings: AnalysisSettings, *, checkpoints: Sequence[CheckpointIdentity] = (),
            cases: Mapping[CaseKey, Mapping[str, Any]] | None = None,
            directions: Mapping[str, bool | None] | None = None,
            human: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Analyse every suite of ``frame``.

    ``checkpoints`` gives the run's order and each checkpoint's identity (for NoTM); ``cases`` the
    metadata of each case (``kind``, ``style``, ``loras``, ``showcase_models``); ``directions`` each
    scorer's ``higher_is_better`` as its scorer record says; ``human`` each suite's ranking by arena votes
    (``human_preference.suites``), kept as the suite's ``human`` block for ``rank_by = "human"``.
    """
    cases = cases or {}
    directions = directions or {}
    order = [c.name for c in checkpoints]
    identities = {c.name: c for c in checkpoints}
    traits = {name: scorer_traits(name, directions.get(name), settings.thresholds, settings.within_prompt)
              for name in (str(s) for s in pd.unique(frame["scorer"]))}
    suites: dict[str, Any] = {}
    for suite in (str(s) for s in pd.unique(frame["suite"])):
        cube = build_cube(frame, suite, order)
        meta = [cases.get((suite, case_id), {}) for case_id in cube.cases]
        kind = next((str(m["kind"]) for m in meta if m.get("kind")), "quality")
        result: dict[str, Any] = {"kind": kind, **analyze_suite(cube, traits, settings)}
        result["case_labels"] = {case_id: _label(case_id, m) for case_id, m in zip(cube.cases, meta, strict=True)}
        if kind in ("style", "lora"):
            result["matrices"] = matrices(cube, traits)
        if kind == "lora":
            result["notm"] = _notm(cube, meta, identities, traits, settings)
        if human and suite in human:
            result["human"] = human[suite]
        suites[suite] = result
    multiplicity = apply_holm(suites, settings.multiplicity)
    ranking = choose_ranking(settings.rank_by, settings.rank_by_source, settings.composite, settings.scorer_order,
                             list(traits))
    for _, block in views(suites):
        block["ranking"] = suite_ranking(ranking, block, settings.scorer_order)
        block["verdict"] = verdict(block, block["ranking"])
    return {
        "settings": settings.as_dict(),
        "ranking": ranking,
        "multiplicity": multiplicity,
        "scorers": {name: t.as_dict() for name, t in sorted(traits.items())},
        "suites": suites,
        "missing": _missing(suites),
    }


def matrices(cube: SuiteCube, traits: Mapping[str, ScorerTraits], excluded: np.ndarray | None = None
             ) -> dict[str, Any]:
    """Per scorer, the checkpoint × case table of mean scores over seeds (the style / LoRA matrix)."""
    tables = {}
    for scorer in cube.scorers:
        values = cube.scorer_values(scorer)
        finite = np.isfinite(values)
        counts = finite.sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(counts > 0, np.where(finite, values, 0.0).sum(axis=2) / counts, np.nan)
        tables[scorer] = {
            "higher_is_better": traits[scorer].higher_is_better,
            "rows": list(cube.checkpoints), "columns": list(cube.cases),
            "mean": [[_num(v) for v in row] for row in means],
            "n": counts.astype(int).tolist(),
        }
        if excluded is not None:
            tables[scorer]["excluded"] = excluded.tolist()
    return tables


def _notm(cube: SuiteCube, meta: Sequence[Mapping[str, Any]], identities: Mapping[str, CheckpointIdentity],
          traits: Mapping[str, ScorerTraits], settings: AnalysisSettings) -> dict[str, Any]:
    showcase = [tuple(m.get("showcase_models") or ()) for m in meta]
    known = [identities.get(name, CheckpointIdentity(name)) for name in cube.checkpoints]
    excluded = notm_exclusions(known, showcase)
    listing = {name: [cube.cases[j] for j in np.flatnonzero(excluded[i])] for i, name in enumerate(cube.checkpoints)}
    result: dict[str, Any] = {
        "rule": "for each checkpoint, the LoRA cases whose showcase images were made with that checkpoint "
                "(matched by name or hash) are left out; pool z-scores are computed before leaving them out",
        "cases_without_showcase_model": [cube.cases[j] for j, models in enumerate(showcase) if not models],
        "excluded": listing,
    }
    result.update(analyze_suite(cube, traits, settings, excluded))
    result["matrices"] = matrices(cube, traits, excluded)
    return result


def _label(case_id: str, meta: Mapping[str, Any]) -> str:
    return str(meta.get("label") or meta.get("style") or case_id)


def _missing(suites: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every (suite, scorer, checkpoint) with planned cells that have no value: reported, never dropped."""
    found = []
    for suite, result in suites.items():
        for scorer, block in result["scorers"].items():
            for checkpoint, summary in block["summary"].items():
                if summary["missing"]:
                    found.append({"suite": suite, "scorer": scorer, "checkpoint": checkpoint,
                                  "missing": summary["missing"], "present": summary["n"]})
    return found


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
