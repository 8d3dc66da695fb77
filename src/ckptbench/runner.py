"""plan → generate → score → results, resumable: work already in the store is never redone."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ckptbench.analysis.results import build_results
from ckptbench.device import resolve_device, resolve_dtype_name
from ckptbench.errors import CkptbenchError
from ckptbench.generate.base import FailedImage, ImageJob, SamplingSettings
from ckptbench.generate.diffusers_backend import DiffusersGenerator, backend_id
from ckptbench.generate.samplers import sampler_recipe
from ckptbench.metrics.engine import ScoreCell, execute_scoring, plan_scoring, prepare_scorers
from ckptbench.metrics.references import ReferenceSet, reference_set
from ckptbench.metrics.registry import check_scorer_names
from ckptbench.metrics.set_engine import check_planned_sizes, execute_sets, plan_sets
from ckptbench.models.checkpoint import ResolvedCheckpoint, resolve_checkpoint
from ckptbench.provenance import collect_provenance
from ckptbench.report.exports import write_results_json, write_scores_csv
from ckptbench.report.html import render_report
from ckptbench.spec import BenchmarkSpec
from ckptbench.store import RunItem, Store
from ckptbench.suites import Case, cases_from_spec


@dataclass
class RunOutcome:
    store: Path
    run_id: int
    generated: int = 0
    cached_images: int = 0
    scored: int = 0
    cached_scores: int = 0
    failed_checkpoints: list[str] = field(default_factory=list)
    results_path: Path | None = None
    report_path: Path | None = None


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def run_benchmark(spec: BenchmarkSpec, store_root: Path | None = None, console: Console | None = None
                  ) -> RunOutcome:
    console = console or Console(stderr=True)
    check_scorer_names(spec)
    sampler_recipe(spec.generation.sampler)
    store = Store(store_root or spec.store_path)
    try:
        with store.exclusive():
            return _run(spec, store, console)
    finally:
        store.close()


def _run(spec: BenchmarkSpec, store: Store, console: Console) -> RunOutcome:
    started = time.perf_counter()
    device = resolve_device(spec.generation.device)
    dtype = resolve_dtype_name(spec.generation.dtype, device)
    # Scorer weights are resolved before any image is made: a missing model should stop the run now,
    # not after hours of generation.
    prepared = prepare_scorers(spec.scorers, device, store)
    cases = cases_from_spec(spec)
    check_planned_sizes(prepared, {suite: count * len(spec.generation.seeds)
                                   for suite, count in Counter(case.suite for case in cases).items()})
    # Reference images are hashed now, so a missing one stops the run before generation.
    references = {(case.suite, case.case_id): reference_set(case.references, store,
                                                            f"suite '{case.suite}' case {case.case_id}")
                  for case in cases if case.references}
    provenance = collect_provenance(device, dtype)
    run_id = store.start_run(spec.model_dump(mode="json", by_alias=True), provenance)
    outcome = RunOutcome(store=store.root, run_id=run_id)

    resolved, jobs = _plan_images(spec, cases, store, run_id, dtype, outcome, console)
    existing = store.existing_images(job.key for jobs_of in jobs.values() for job in jobs_of)
    todo = {name: [job for job in jobs_of if job.key not in existing] for name, jobs_of in jobs.items()}
    todo_count = len({job.key for jobs_of in todo.values() for job in jobs_of})
    outcome.cached_images = len(existing)
    console.print(f"{todo_count} images to generate ({len(existing)} already in the store)")

    if todo_count:
        _generate(spec, store, run_id, device, resolved, todo, outcome, console)

    cells = _score_cells(store, run_id, references)
    plan = plan_scoring(store, run_id, prepared, cells)
    set_plan = plan_sets(store, run_id, prepared, cells)
    outcome.cached_scores = plan.cached + set_plan.cached
    console.print(f"{plan.count + set_plan.count} scores to compute ({outcome.cached_scores} already in the store)")
    if not todo_count and not plan.count and not set_plan.count:
        console.print("0 images to generate, 0 to score: everything is already in the store")
    print_notes(plan.truncated, plan.skipped, console)
    if plan.count or set_plan.count:
        with _progress(console) as progress:
            tasks: dict[str, int] = {}

            def advance(label: str, done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = progress.add_task(label, total=total)
                progress.update(tasks[label], completed=done)

            report = execute_scoring(store, prepared, plan, device, advance)
            set_report = execute_sets(store, prepared, set_plan, device, advance)
        outcome.scored = report.scored + set_report.scored
        for scorer, image_key, message in report.failures:
            store.put_failure(run_id, "score", message, image_key=image_key, scorer=scorer)
        for scorer, checkpoint, suite, message in set_report.failures:
            store.put_failure(run_id, "set-score", f"suite '{suite}': {message}", checkpoint=checkpoint,
                              scorer=scorer)

    provenance = {**provenance, "text_truncated": plan.truncated, "skipped": plan.skipped,
                  "scorer_dtypes": {p.name: p.backbone.dtype for p in prepared},
                  "duration_s": round(time.perf_counter() - started, 3)}
    store.finish_run(run_id, "failed" if len(outcome.failed_checkpoints) == len(spec.checkpoints) else "ok",
                     provenance)
    outcome.results_path, outcome.report_path = write_outputs(store, run_id)
    return outcome


def write_outputs(store: Store, run_id: int | None = None, out: Path | None = None) -> tuple[Path, Path]:
    """results.json, scores.csv and report/index.html for a run (default: the latest)."""
    results, frame = build_results(store, run_id)
    out = out or store.root
    results_path = write_results_json(results, out)
    write_scores_csv(frame, out)
    report_path = render_report(results, out / "report")
    return results_path, report_path


def _plan_images(spec: BenchmarkSpec, cases: Sequence[Case], store: Store, run_id: int, dtype: str,
                 outcome: RunOutcome, console: Console
                 ) -> tuple[dict[str, ResolvedCheckpoint], dict[str, list[ImageJob]]]:
    generation = spec.generation
    settings = SamplingSettings(sampler=generation.sampler, steps=generation.steps, cfg=generation.cfg,
                                width=generation.width, height=generation.height, dtype=dtype)
    backend = backend_id()
    resolved: dict[str, ResolvedCheckpoint] = {}
    jobs: dict[str, list[ImageJob]] = {}
    items: list[RunItem] = []
    for checkpoint in spec.checkpoints:
        try:
            resolved[checkpoint.name] = resolve_checkpoint(checkpoint, store)
        except CkptbenchError as error:
            _fail_checkpoint(store, run_id, checkpoint.name, checkpoint.source, None, str(error), outcome, console)
            continue
        ckpt = resolved[checkpoint.name]
        store.put_run_checkpoint(run_id, ckpt.name, ckpt.source, ckpt.sha256, "ok", None)
        jobs[ckpt.name] = []
        for case in cases:
            inputs = case.pixel_inputs(generation.negative_prompt)
            for seed in generation.seeds:
                job = ImageJob(checkpoint=ckpt.name, checkpoint_sha256=ckpt.sha256, case=case, seed=seed,
                               prompt=inputs["prompt"], negative_prompt=inputs["negative_prompt"],
                               settings=settings, backend=backend)
                jobs[ckpt.name].append(job)
                items.append(RunItem(ckpt.name, case.suite, case.case_id, case.prompt, seed, job.key))
    store.put_run_items(run_id, items)
    return resolved, jobs


def _generate(spec: BenchmarkSpec, store: Store, run_id: int, device: torch.device,
              resolved: dict[str, ResolvedCheckpoint], todo: dict[str, list[ImageJob]], outcome: RunOutcome,
              console: Console) -> None:
    generator = DiffusersGenerator(device, spec.generation.batch_size)
    done_keys: set[str] = set()
    with _progress(console) as progress:
        for name, jobs in todo.items():
            # The same image may be asked for twice (one file under two names): make it once.
            jobs = _unique(job for job in jobs if job.key not in done_keys)
            if not jobs:
                continue
            task = progress.add_task(f"generating with {name}", total=len(jobs))
            try:
                for result in generator.generate(resolved[name], jobs):
                    if isinstance(result, FailedImage):
                        store.put_failure(run_id, "image", result.error, checkpoint=name, image_key=result.job.key)
                    else:
                        job = result.job
                        store.put_image(job.key, result.image, result.infotext,
                                        checkpoint_sha256=job.checkpoint_sha256, prompt=job.prompt,
                                        negative_prompt=job.negative_prompt, seed=job.seed,
                                        settings=job.settings.as_dict(), backend=job.backend,
                                        seconds=result.seconds)
                        outcome.generated += 1
                        done_keys.add(job.key)
                    progress.advance(task)
            except CkptbenchError as error:
                ckpt = resolved[name]
                _fail_checkpoint(store, run_id, name, ckpt.source, ckpt.sha256, str(error), outcome, console)
            except Exception as error:  # one bad checkpoint must not sink the run
                ckpt = resolved[name]
                message = f"checkpoint '{name}': generation failed ({type(error).__name__}: {error})"
                _fail_checkpoint(store, run_id, name, ckpt.source, ckpt.sha256, message, outcome, console)


def _unique(jobs: Iterable[ImageJob]) -> list[ImageJob]:
    seen: dict[str, ImageJob] = {}
    for job in jobs:
        seen.setdefault(job.key, job)
    return list(seen.values())


def _fail_checkpoint(store: Store, run_id: int, name: str, source: str, sha256: str | None, message: str,
                     outcome: RunOutcome, console: Console) -> None:
    store.put_run_checkpoint(run_id, name, source, sha256, "failed", message)
    store.put_failure(run_id, "checkpoint", message, checkpoint=name)
    outcome.failed_checkpoints.append(name)
    console.print(f"[red]failed[/]: {message}")


def print_notes(truncated: dict[str, dict[str, int]], skipped: dict[str, dict[str, int]], console: Console) -> None:
    for scorer, suites in truncated.items():
        for suite, count in suites.items():
            console.print(f"[yellow]note[/]: {count} prompt(s) of suite '{suite}' are longer than the text "
                          f"encoder's context and are truncated for {scorer}")
    for scorer, reasons in skipped.items():
        for reason, count in reasons.items():
            hint = f" (set [scorers.{scorer}] references to give a default)" if "reference" in reason else ""
            console.print(f"[yellow]note[/]: {scorer} skips {count} image(s): {reason}{hint}")


def _score_cells(store: Store, run_id: int, references: dict[tuple[str, str], ReferenceSet]
                 ) -> Sequence[ScoreCell]:
    items = store.run_items(run_id)
    present = items[items["image"].notna()]
    return [ScoreCell(item=int(row.item), checkpoint=str(row.checkpoint), suite=str(row.suite),
                      image_key=str(row.image_key), image_path=store.root / str(row.image), prompt=str(row.prompt),
                      references=references.get((str(row.suite), str(row.case_id))))
            for row in present.itertuples()]
