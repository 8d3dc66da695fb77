"""plan → generate → score → results, resumable: work already in the store is never redone."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from ckptbench.errors import DiskFullError
from ckptbench.executors import Executor, TaskEnd, open_executor
from ckptbench.executors.base import GenerationTask
from ckptbench.failure_records import describe_failure
from ckptbench.generate.base import ImageJob
from ckptbench.generate.embeddings import EmbeddingLibrary, near_miss_note
from ckptbench.metrics.engine import ScoreCell, plan_scoring
from ckptbench.metrics.references import ReferenceSet
from ckptbench.metrics.set_engine import plan_sets
from ckptbench.models.checkpoint import ResolvedCheckpoint
from ckptbench.outcome import run_statuses
from ckptbench.plan import (
    ImagePlan,
    embedding_near_misses,
    generation_plan,
    images_todo,
    plan_images,
    prepare_run,
)
from ckptbench.progress import progress_bars
from ckptbench.provenance import collect_provenance
from ckptbench.report.terminal import print_notes
from ckptbench.spec import BenchmarkSpec, ExecutorName
from ckptbench.stop import StopFlag, stop_requested
from ckptbench.store import Store, Throughput
from ckptbench.suites.load import LoadedSuite, checked_suites
from ckptbench.throughput import GenerationMeter, scoring_throughput


@dataclass
class RunOutcome:
    store: Path
    run_id: int
    generated: int = 0
    cached_images: int = 0
    scored: int = 0
    cached_scores: int = 0
    failed_checkpoints: list[str] = field(default_factory=list)
    models: dict[str, dict[str, object]] = field(default_factory=dict)  # what was detected in each checkpoint
    results_path: Path | None = None
    report_path: Path | None = None
    interrupted: bool = False  # a stop was asked for: the run ended early and resumes when run again
    failures: Counter[str] = field(default_factory=Counter)  # recorded failures and warnings by scope
    status: str = "ok"  # ckptbench.outcome: ok, partial, failed or interrupted
    executor: str = "local"
    retried: int = 0  # images that failed in an earlier run and were tried again
    not_retried: int = 0  # images that failed in an earlier run and were left out (retry_failed=False)


def run_benchmark(spec: BenchmarkSpec, store_root: Path | None = None, console: Console | None = None, *,
                  executor: ExecutorName | None = None, ray_address: str | None = None,
                  stop: StopFlag | None = None, retry_failed: bool = True) -> RunOutcome:
    """Run a spec; ``executor`` and ``ray_address`` override the spec's ``[benchmark]`` keys; ``stop``, once
    set, ends the run after the batch in progress (status 'interrupted'). Images whose making failed in an
    earlier run are not in the store, so a run tries them again; ``retry_failed=False`` leaves them out
    (and records them as failures of this run)."""
    console = console or Console(stderr=True)
    suites = checked_suites(spec)  # a missing suite file or reference folder stops the run before any work
    store = Store(store_root or spec.store_path)
    try:
        with store.exclusive():
            if note := store.recovered.describe():
                console.print(f"[yellow]recovered[/]: {note}", highlight=False)
            work = open_executor(spec, executor, ray_address)
            try:
                return _run(spec, suites, store, work, console, stop, retry_failed)
            except DiskFullError:
                # The store is consistent (atomic files, transactional rows); record that the run stopped.
                _mark_interrupted(store)
                raise
            finally:
                work.close()
    finally:
        store.close()


def _run(spec: BenchmarkSpec, suites: list[LoadedSuite], store: Store, work: Executor, console: Console,
         stop: StopFlag | None, retry_failed: bool) -> RunOutcome:
    started = time.perf_counter()
    setup = prepare_run(spec, suites, store, work)
    device, dtype, prepared, embeddings = setup.device, setup.dtype, setup.prepared, setup.embeddings
    provenance = {**collect_provenance(device, dtype), "executor": work.describe()}
    run_id = store.start_run(spec.model_dump(mode="json", by_alias=True), provenance)
    outcome = RunOutcome(store=store.root, run_id=run_id, executor=work.name)

    store.put_run_cases(run_id, [(suite.name, case.case_id, case.metadata())
                                 for suite in suites for case in suite.cases])
    image_plan = plan_images(spec, suites, store, dtype, embeddings, console)
    _record_plan(store, run_id, image_plan, outcome, console)
    jobs, references = image_plan.jobs, image_plan.references
    near_misses = embedding_near_misses(embeddings, jobs)
    for _, _, message in near_misses:
        store.put_failure(run_id, "warning", message)
        console.print(f"[yellow]note[/]: {escape(message)}", highlight=False)
    planned = {job.key: job for jobs_of in jobs.values() for job in jobs_of}
    failed_before = store.earlier_image_failures(run_id, set(planned) - store.existing_images(planned))
    left_out = set() if retry_failed else set(failed_before)
    # Whole batches, so that images made after an interruption come out as in an uninterrupted run.
    existing, todo = images_todo(store, jobs, spec.generation.batch_size, left_out)
    new_keys = {job.key for jobs_of in todo.values() for job in jobs_of if job.key not in existing}
    todo_count = len(new_keys)
    outcome.cached_images = len(existing)
    outcome.retried = len(new_keys & set(failed_before))
    _record_left_out(store, run_id, planned, left_out - new_keys, failed_before, outcome)
    console.print(_image_counts(len(planned), len(existing), todo_count, outcome, failed_before), highlight=False)

    measured: list[Throughput] = []
    runtime: dict[str, dict[str, object]] = {}
    if todo_count and not stop_requested(stop):
        measured, runtime = _generate(spec, store, run_id, work, image_plan.resolved, todo, existing, embeddings,
                                      outcome, console, stop)

    cells = _score_cells(store, run_id, references)
    plan = plan_scoring(store, run_id, prepared, cells)
    set_plan = plan_sets(store, run_id, prepared, cells)
    outcome.cached_scores = plan.cached + set_plan.cached
    to_score = plan.count + set_plan.count
    console.print(f"scores: {outcome.cached_scores + to_score} needed, {outcome.cached_scores} already in the "
                  f"store, {to_score} to compute", highlight=False)
    if not todo_count and not to_score:
        console.print(_nothing_new(image_plan, outcome), highlight=False)
    print_notes(plan.truncated, plan.skipped, console)
    if to_score and not stop_requested(stop):
        backbones = sorted({entry.backbone.id for entry in prepared if plan.todo.get(entry.name)
                            or set_plan.todo.get(entry.name)})
        console.print(f"loading the scorer models ({', '.join(backbones)}) …", highlight=False)
        with progress_bars(console, "img") as progress:
            tasks: dict[str, int] = {}

            def advance(label: str, done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = progress.add_task(label, total=total)
                progress.update(tasks[label], completed=done)

            # --- executor call site: scoring (per-image scorers by backbone, then set scorers) ---
            scoring = work.score(store, prepared, plan, set_plan, device, advance, stop)
        report, set_report = scoring.report, scoring.set_report
        outcome.scored = report.scored + set_report.scored
        measured.extend(scoring_throughput(scoring.measures, work.name))
        for scorer, image_key, message in report.failures:
            store.put_failure(run_id, "score", message, image_key=image_key, scorer=scorer)
        if report.failures:
            console.print(f"[red]failed[/]: {len(report.failures)} score(s) could not be computed; the first: "
                          f"{escape(report.failures[0][2])} (all are listed in results.json and the report)",
                          highlight=False)
        for scorer, checkpoint, suite, message in set_report.failures:
            store.put_failure(run_id, "set-score", f"suite '{suite}': {message}", checkpoint=checkpoint,
                              scorer=scorer)
    store.put_throughput(run_id, measured)

    embedding_record = _embedding_record(embeddings, jobs, near_misses)
    provenance = {**provenance, "text_truncated": plan.truncated, "skipped": plan.skipped,
                  "checkpoints": outcome.models, "embeddings": embedding_record,
                  "scorer_dtypes": {p.name: p.backbone.dtype for p in prepared},
                  "generation_runtime": runtime, "duration_s": round(time.perf_counter() - started, 3)}
    outcome.interrupted = stop_requested(stop)
    _, outcome.status = run_statuses(store, run_id, outcome.interrupted)
    store.finish_run(run_id, outcome.status, provenance)
    outcome.failures = Counter(str(failure["scope"]) for failure in store.run_failures(run_id))
    # Also after a stop: the outputs then show what the run has so far.
    from ckptbench.report.outputs import write_outputs  # tables, statistics, HTML: only now

    outcome.results_path, outcome.report_path = write_outputs(store, run_id, console=console)
    return outcome


def _image_counts(planned: int, existing: int, todo: int, outcome: RunOutcome,
                  failed_before: dict[str, tuple[int, str]]) -> str:
    """The image counters as one sentence, saying how many of the images to make are retried failures."""
    text = f"images: {planned} planned, {existing} already in the store, {todo} to generate"
    if outcome.retried:
        runs = sorted({run for run, _ in failed_before.values()})
        text += (f" ({outcome.retried} of them failed in run {', '.join(f'#{run}' for run in runs)} and are tried "
                 "again; `--skip-failed` leaves such images out)")
    if outcome.not_retried:
        text += (f"; {outcome.not_retried} that failed in an earlier run are left out (--skip-failed) and recorded "
                 "as failures of this run")
    return text


def _record_left_out(store: Store, run_id: int, planned: dict[str, ImageJob], left_out: set[str],
                     failed_before: dict[str, tuple[int, str]], outcome: RunOutcome) -> None:
    """Images not retried (``--skip-failed``) are failures of this run too, with the earlier reason."""
    for key in sorted(left_out):
        job = planned[key]
        run, message = failed_before[key]
        store.put_failure(run_id, "image", f"not tried again (--skip-failed); it failed in run #{run}: {message}",
                          checkpoint=job.checkpoint, image_key=key)
    outcome.not_retried = len(left_out)


def _nothing_new(plan: ImagePlan, outcome: RunOutcome) -> str:
    """Why a run had nothing to make or score: all done, or all that is left cannot be made."""
    left = [f"{len(plan.skipped_cases)} case(s) left out" if plan.skipped_cases else "",
            f"{len(plan.unresolved)} checkpoint(s) unusable" if plan.unresolved else "",
            f"{outcome.not_retried} earlier failure(s) not retried" if outcome.not_retried else ""]
    if any(left):
        return (f"nothing new to generate or score, but not everything is there: {', '.join(t for t in left if t)} "
                "(see the messages above)")
    return "0 images to generate, 0 to score: everything is already in the store"


def _mark_interrupted(store: Store) -> None:
    """Mark the run this process started (the store's latest: it holds the lock) as interrupted."""
    try:
        run = store.latest_run()
        if run is not None and run["status"] == "running":
            store.finish_run(int(run["run_id"]), "interrupted")
    except sqlite3.Error:  # the database may not be writable either (same full disk); the next run marks it
        pass


def _record_plan(store: Store, run_id: int, plan: ImagePlan, outcome: RunOutcome, console: Console) -> None:
    for skipped in plan.skipped_cases:
        store.put_failure(run_id, "case", skipped.message, suite=skipped.suite, case_id=skipped.case_id)
    for checkpoint, message in plan.unresolved:
        _fail_checkpoint(store, run_id, checkpoint.name, checkpoint.source, None, message, outcome, console)
    for ckpt in plan.resolved.values():
        outcome.models[ckpt.name] = dict(ckpt.detection)
        store.put_run_checkpoint(run_id, ckpt.name, ckpt.source, ckpt.sha256, "ok", None)
    store.put_run_items(run_id, plan.items)


def _embedding_record(library: EmbeddingLibrary, jobs: dict[str, list[ImageJob]],
                      near_misses: list[tuple[str, str, str]]) -> dict[str, object]:
    """Which embeddings the run used and which prompt words nearly named one (provenance)."""
    if not library.files:
        return {}
    used = {name: sha256 for jobs_of in jobs.values() for job in jobs_of for name, sha256 in job.embeddings}
    return {"used": used, "unused": sorted(set(library.files) - set(used)),
            "near_misses": [near_miss_note(word, name) for word, name, _ in near_misses]}


def _generate(spec: BenchmarkSpec, store: Store, run_id: int, work: Executor,
              resolved: dict[str, ResolvedCheckpoint], todo: dict[str, list[ImageJob]], existing: set[str],
              embeddings: EmbeddingLibrary, outcome: RunOutcome, console: Console, stop: StopFlag | None
              ) -> tuple[list[Throughput], dict[str, dict[str, object]]]:
    """Run the generation tasks on the executor and write what comes back; returns the measured throughput
    and what each checkpoint's generator chose (fast path, batch size) for provenance."""
    tasks = generation_plan(spec, work.workers(), resolved, todo, embeddings)
    jobs_by_key = {job.key: job for jobs in todo.values() for job in jobs}
    shards_failed: dict[str, int] = defaultdict(int)
    warned: set[tuple[str, str]] = set()
    repeated: Counter[tuple[str, str]] = Counter()  # (checkpoint, reason) → images failed after the first
    meter = GenerationMeter(work.name)
    with progress_bars(console, "img") as progress:
        bars = _GenerationBars(progress, tasks, todo, work.workers())
        # --- executor call site: generation (tasks per checkpoint shard; results come back here) ---
        for event in work.generate(tasks, stop):
            name = event.task.checkpoint.name
            if isinstance(event, TaskEnd):
                meter.task_ended(event)
                if event.error is not None:
                    shards_failed[name] += 1
                    _task_failed(store, run_id, event, shards_failed[name], outcome, console)
                bars.task_ended(event, failed=event.error is not None)
                continue
            bars.image(name)
            job = jobs_by_key[event.key]
            if event.key in existing:
                pass  # remade only to keep its batch as it was; the stored copy stays
            elif event.png is None:
                error = event.error or "failed"
                store.put_failure(run_id, "image", error, checkpoint=name, image_key=event.key)
                if (name, error) in warned:  # said once with its cell, counted after, recorded for every image
                    repeated[(name, error)] += 1
                else:
                    warned.add((name, error))
                    failure = {"checkpoint": name, "suite": job.case.suite, "case_id": job.case.case_id,
                               "prompt": job.case.prompt, "seed": job.seed, "message": error}
                    console.print(f"[red]failed[/]: {escape(describe_failure(failure))}", highlight=False)
            else:
                for warning in event.warnings:  # once per checkpoint, not once per image
                    if (name, warning) not in warned:
                        warned.add((name, warning))
                        store.put_failure(run_id, "warning", warning, checkpoint=name, image_key=event.key)
                store.put_image_png(job.key, event.png, event.infotext, checkpoint_sha256=job.checkpoint_sha256,
                                    prompt=job.prompt, negative_prompt=job.negative_prompt, seed=job.seed,
                                    settings=job.settings.as_dict(), backend=job.backend, seconds=event.seconds)
                outcome.generated += 1
                meter.image_made(event, job)
            progress.advance(bars.ids[name])
    for (name, _), count in repeated.items():
        console.print(f"[red]failed[/]: {count} more image(s) of checkpoint '{escape(name)}' for the same reason; "
                      "each is listed with its case and seed in results.json and the report", highlight=False)
    return meter.rows(), meter.runtime


class _GenerationBars:
    """One bar per checkpoint whose label says what it is doing: waiting, loading its checkpoint (the first
    minutes of a real model, when no image comes yet), generating, or failed."""

    def __init__(self, progress: Progress, tasks: Sequence[GenerationTask], todo: dict[str, list[ImageJob]],
                 workers: int) -> None:
        self.progress = progress
        self.ids = {name: progress.add_task(f"{name}: waiting", total=len(jobs)) for name, jobs in todo.items()
                    if jobs}
        self.queue = list(dict.fromkeys(task.checkpoint.name for task in tasks))
        self.shards_left = Counter(task.checkpoint.name for task in tasks)
        self.generating: set[str] = set()
        for _ in range(max(1, workers)):
            self._load_next()

    def _label(self, name: str, text: str) -> None:
        self.progress.update(self.ids[name], description=f"{escape(name)}: {text}")

    def _load_next(self) -> None:
        if self.queue:
            self._label(self.queue.pop(0), "loading the checkpoint …")

    def image(self, name: str) -> None:
        if name not in self.generating:
            self.generating.add(name)
            self._label(name, "generating")

    def task_ended(self, event: TaskEnd, failed: bool) -> None:
        name = event.task.checkpoint.name
        self.shards_left[name] -= 1
        if failed and self.shards_left[name] == 0 and name not in self.generating:
            self._label(name, "failed")
        if self.shards_left[name] == 0:
            if name in self.queue:  # ended before its turn came (tasks ran in another order)
                self.queue.remove(name)
            self._load_next()


def _task_failed(store: Store, run_id: int, event: TaskEnd, failed_shards: int, outcome: RunOutcome,
                 console: Console) -> None:
    """A task that failed as a whole: its checkpoint fails when it was its only shard or its last good one."""
    task, message = event.task, event.error or "failed"
    ckpt = task.checkpoint
    if task.shards > 1:
        store.put_failure(run_id, "shard", message, checkpoint=ckpt.name)
        console.print(f"[red]failed[/]: {escape(message)}", highlight=False)
    if failed_shards == task.shards:
        _fail_checkpoint(store, run_id, ckpt.name, ckpt.source, ckpt.sha256, message, outcome, console,
                         quiet=task.shards > 1)


def _fail_checkpoint(store: Store, run_id: int, name: str, source: str, sha256: str | None, message: str,
                     outcome: RunOutcome, console: Console, quiet: bool = False) -> None:
    store.put_run_checkpoint(run_id, name, source, sha256, "failed", message)
    store.put_failure(run_id, "checkpoint", message, checkpoint=name)
    outcome.failed_checkpoints.append(name)
    if not quiet:
        console.print(f"[red]failed[/]: {escape(message)}", highlight=False)


def _score_cells(store: Store, run_id: int, references: dict[tuple[str, str], ReferenceSet]
                 ) -> Sequence[ScoreCell]:
    return [ScoreCell(item=int(row["item"]), checkpoint=str(row["checkpoint"]), suite=str(row["suite"]),
                      image_key=str(row["image_key"]), image_path=store.root / str(row["image"]),
                      prompt=str(row["prompt"]), references=references.get((str(row["suite"]), str(row["case_id"]))))
            for row in store.run_item_rows(run_id) if row["image"] is not None]
