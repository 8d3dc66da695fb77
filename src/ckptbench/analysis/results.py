"""Assembling a run's ``results.json`` from the store's record of that run."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from ckptbench.analysis.analyze import analyze
from ckptbench.analysis.composite import COMPOSITE
from ckptbench.analysis.human_ranking import HUMAN
from ckptbench.analysis.skills import skill_breakdown
from ckptbench.analysis.suite import AnalysisSettings
from ckptbench.analysis.summary import summarize
from ckptbench.analysis.sweep import pooled_over_variants, sweep_results
from ckptbench.arena.analysis import run_human_preference
from ckptbench.errors import SpecError, StoreError
from ckptbench.failure_records import traced_failures
from ckptbench.hashing import autov2
from ckptbench.outcome import statuses_of
from ckptbench.store import Store, items_frame
from ckptbench.suites.notm import CheckpointIdentity
from ckptbench.sweep import recorded_axes
from ckptbench.textfiles import closest

if TYPE_CHECKING:
    from ckptbench.spec import BenchmarkSpec

RESULTS_SCHEMA = "ckptbench.results/1"


def analysis_settings(spec: dict[str, Any], rank_by: str | None = None) -> AnalysisSettings:
    """The analysis settings of a run, read from the effective spec it recorded; ``rank_by`` (from the
    command line) overrides the spec's ``[analysis] rank_by``."""
    benchmark = spec.get("benchmark", {})
    section = spec.get("analysis") or {}
    asked = rank_by or section.get("rank_by")
    return AnalysisSettings(
        resamples=int(benchmark.get("bootstrap", 1000)),
        seed=int(benchmark.get("analysis_seed", 0)),
        baseline=section.get("baseline"),
        thresholds={str(k): float(v) for k, v in (section.get("thresholds") or {}).items()},
        composite={str(k): float(v) for k, v in (section.get("composite") or {}).items()},
        within_prompt=frozenset(section.get("within_prompt") or ()),
        rank_by=asked,
        rank_by_source=("command line (--rank-by)" if rank_by else "spec [analysis] rank_by") if asked else None,
        multiplicity=str(section.get("multiplicity") or "per-scorer"),
        scorer_order=tuple(str(n) for n in (spec.get("scorers") or {}).get("use") or ()),
    )


def spec_with_rank_by(spec: BenchmarkSpec, rank_by: str) -> BenchmarkSpec:
    """``spec`` with ``[analysis] rank_by`` replaced (``run --rank-by``), checked against its scorers."""
    if rank_by not in (COMPOSITE, HUMAN) and rank_by not in spec.scorers.use:
        hint = closest(rank_by, [*spec.scorers.use, COMPOSITE, HUMAN])
        raise SpecError(f"--rank-by '{rank_by}' is neither a scorer of the spec's scorers.use nor 'composite' or "
                        "'human'" + (f" (did you mean '{hint}'?)" if hint else "") + "; give one of: "
                        + ", ".join([*spec.scorers.use, COMPOSITE, HUMAN]) + ".")
    return spec.model_copy(update={"analysis": spec.analysis.model_copy(update={"rank_by": rank_by})})


def check_rank_by(rank_by: str | None, scorers: Sequence[str], where: str) -> None:
    """A clear error when ``rank_by`` names neither a scorer of the run nor "composite"."""
    if rank_by is None or rank_by in (COMPOSITE, HUMAN) or rank_by in scorers:
        return
    hint = closest(rank_by, [*scorers, COMPOSITE, HUMAN])
    raise StoreError(f"{where} '{rank_by}' is not a scorer of this run" + (f" (did you mean '{hint}'?)" if hint else "")
                     + "; give one of: " + ", ".join([*sorted(scorers), COMPOSITE, HUMAN]) + ".")


def build_results(store: Store, run_id: int | None = None, rank_by: str | None = None
                  ) -> tuple[dict[str, Any], pd.DataFrame]:
    """The results document and the tidy score table of one run (default: the latest); ``rank_by`` (a
    scorer or "composite") overrides the ranking the run's spec asks for."""
    run = store.run(run_id) if run_id is not None else store.latest_run()
    if run is None:
        raise StoreError(f"{store.root}: no run recorded in this store; run `ckptbench run SPEC.toml` first.")
    run_id = int(run["run_id"])
    spec: dict[str, Any] = run["spec"]
    frame = store.frame(run_id)
    sets = store.set_frame(run_id)
    item_rows = store.run_item_rows(run_id)  # read once: the statuses take the rows, the tables the frame
    items = items_frame(item_rows)
    benchmark = spec.get("benchmark", {})
    settings = analysis_settings(spec, rank_by)
    # With a sweep, the suite statistics see each cell's mean over the variants; the axes get their own tables.
    pooled = pooled_over_variants(frame)
    summaries = summarize(pooled)
    scorer_keys = store.run_scorer_keys(run_id)
    infos = store.scorer_infos(scorer_keys.values())
    cases = store.run_cases(run_id)
    failures = traced_failures(store.run_failures(run_id), items, cases)
    provenance: dict[str, Any] = run["provenance"]
    detected = provenance.get("checkpoints", {})
    run_checkpoints = store.run_checkpoints(run_id)
    identities = [CheckpointIdentity(str(c["name"]), str(c["source"]) if c["source"] else None,
                                     str(c["sha256"]) if c["sha256"] else None)
                  for c in run_checkpoints]
    directions = {name: info.get("higher_is_better") for name, key in scorer_keys.items()
                  if (info := infos.get(key)) is not None}
    if settings.baseline is not None and settings.baseline not in {c.name for c in identities}:
        raise StoreError(f"{store.root}: run {run_id}: analysis.baseline '{settings.baseline}' is not a checkpoint "
                         "of this run; name one of: " + ", ".join(c.name for c in identities) + ".")
    check_rank_by(settings.rank_by, [str(s) for s in pd.unique(frame["scorer"])],
                  f"{store.root}: run {run_id}: " + ("--rank-by" if rank_by else "analysis.rank_by"))
    # Arena votes on this run's images (docs/arena.md); None when there are none.
    human = run_human_preference(store.root, items, frame, directions, resamples=settings.resamples,
                                 seed=settings.seed)
    analysis = analyze(pooled, settings, checkpoints=identities, cases=cases, directions=directions,
                       human=(human or {}).get("suites"))
    axes = recorded_axes(spec)
    sweep = sweep_results(frame, axes, settings, directions, [c.name for c in identities]) if axes else None
    statuses, status = statuses_of(run, item_rows, run_checkpoints, failures)
    checkpoints = []
    for entry in run_checkpoints:
        name = str(entry["name"])
        mine = items[items["checkpoint"] == name]
        failed_images = sum(1 for f in failures if f["scope"] == "image" and f["checkpoint"] == name)
        sha = entry["sha256"]
        checkpoints.append({
            "name": name,
            "source": entry["source"],
            "sha256": sha,
            "autov2": autov2(str(sha)) if sha else None,
            "status": statuses[name],
            "error": entry["error"],
            "model": detected.get(name),  # family, prediction type, VAE and config used, and why
            "images": {"planned": len(mine), "ok": int(mine["image"].notna().sum()),
                       "failed": failed_images},
            "scores": {scorer: summary.as_dict() for scorer, summary in summaries.get(name, {}).items()},
            "sets": _set_scores(sets[sets["checkpoint"] == name]),
        })
    started, finished = run["started_at"], run["finished_at"]
    results = {
        "schema": RESULTS_SCHEMA,
        "benchmark": {"name": benchmark.get("name"), "preset": benchmark.get("preset"), "store": str(store.root)},
        "run": {"id": run_id, "status": status, "imported": bool(provenance.get("imported")), "started_at": started,
                "finished_at": finished,
                "duration_s": (finished - started) if finished else None},
        "checkpoints": checkpoints,
        "scorers": {name: _scorer_entry(infos.get(key, {})) for name, key in sorted(scorer_keys.items())},
        "analysis": analysis,
        "sweep": sweep,
        "skills": skill_breakdown(frame, cases),  # per tag (skill) of tagged suites; docs/results.md
        "human_preference": human,
        "failures": failures,
        "text_truncated": provenance.get("text_truncated", {}),
        "provenance": provenance,
        "spec": spec,
    }
    return results, frame


def _set_scores(rows: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    """scorer → suite → value (None where it could not be computed), images and references compared."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for row in rows.itertuples():
        missing = pd.isna(row.value)
        result.setdefault(str(row.scorer), {})[str(row.suite)] = {
            "value": None if missing else float(row.value),
            "images": None if missing else int(row.images),
            "references": None if missing else int(row.references),
        }
    return result


def _scorer_entry(info: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "version", "level", "weights_sha256", "higher_is_better", "scale", "backbone", "preprocessing",
            "dtype", "needs_prompt", "needs_references", "description", "weights", "key")
    return {key: info.get(key) for key in keys}
