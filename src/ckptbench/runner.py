"""plan → generate → score → results, resumable: work already in the store is never redone."""

from __future__ import annotations

import sqlite3
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ckptbench.device import resolve_device, resolve_dtype_name
from ckptbench.errors import CkptbenchError, DiskFullError
from ckptbench.generate.base import FailedImage, ImageJob, LoraUse, SamplingSettings
from ckptbench.generate.diffusers_backend import DiffusersGenerator, backend_id, batches_with_missing
from ckptbench.generate.embeddings import EmbeddingLibrary, near_miss_note
from ckptbench.generate.hires import hires_settings
from ckptbench.generate.lora import LoraLibrary
from ckptbench.generate.samplers import sampler_recipe, schedule_steps
from ckptbench.metrics.engine import ScoreCell, execute_scoring, plan_scoring, prepare_scorers
from ckptbench.metrics.references import ReferenceSet, reference_set
from ckptbench.metrics.registry import check_scorer_names
from ckptbench.metrics.set_engine import check_planned_sizes, execute_sets, plan_sets
from ckptbench.models.checkpoint import ResolvedCheckpoint, resolve_checkpoint
from ckptbench.provenance import collect_provenance
from ckptbench.report.outputs import write_outputs
from ckptbench.spec import BenchmarkSpec
from ckptbench.stop import StopFlag, stop_requested
from ckptbench.store import RunItem, Store
from ckptbench.suites import Case
from ckptbench.suites.load import LoadedSuite, load_suites
from ckptbench.suites.loras import resolve_case_loras

RunnableCase = tuple[tuple[int, ...], Case, tuple[LoraUse, ...]]  # seeds, case, its LoRAs


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


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=False)


def run_benchmark(spec: BenchmarkSpec, store_root: Path | None = None, console: Console | None = None,
                  stop: StopFlag | None = None) -> RunOutcome:
    """Run the spec; ``stop``, once set, ends the run after the batch in progress (status 'interrupted')."""
    console = console or Console(stderr=True)
    check_scorer_names(spec)
    sampler_recipe(spec.generation.sampler)
    suites = load_suites(spec)  # a missing suite file or reference folder stops the run before any work
    store = Store(store_root or spec.store_path)
    try:
        with store.exclusive():
            if note := store.recovered.describe():
                console.print(f"[yellow]recovered[/]: {note}", highlight=False)
            try:
                return _run(spec, suites, store, console, stop)
            except DiskFullError:
                # The store is consistent (atomic files, transactional rows); record that the run stopped.
                _mark_interrupted(store)
                raise
    finally:
        store.close()


def _run(spec: BenchmarkSpec, suites: list[LoadedSuite], store: Store, console: Console,
         stop: StopFlag | None) -> RunOutcome:
    started = time.perf_counter()
    device = resolve_device(spec.generation.device)
    dtype = resolve_dtype_name(spec.generation.dtype, device)
    # Scorer weights are resolved before any image is made: a missing model should stop the run now,
    # not after hours of generation.
    prepared = prepare_scorers(spec.scorers, device, store)
    check_planned_sizes(prepared, {suite.name: len(suite.cases) * len(suite.seeds) for suite in suites})
    embeddings = EmbeddingLibrary(spec.generation.embedding_dirs, spec.generation.allow_pickle_embeddings, store)
    provenance = collect_provenance(device, dtype)
    run_id = store.start_run(spec.model_dump(mode="json", by_alias=True), provenance)
    outcome = RunOutcome(store=store.root, run_id=run_id)

    store.put_run_cases(run_id, [(suite.name, case.case_id, case.metadata())
                                 for suite in suites for case in suite.cases])
    runnable, references = _runnable_cases(spec, suites, store, run_id, console)
    resolved, jobs = _plan_images(spec, runnable, store, run_id, dtype, embeddings, outcome, console)
    existing = store.existing_images(job.key for jobs_of in jobs.values() for job in jobs_of)
    # Whole batches, so that images made after an interruption come out as in an uninterrupted run.
    todo = {name: batches_with_missing(jobs_of, existing, spec.generation.batch_size)
            for name, jobs_of in jobs.items()}
    todo_count = len({job.key for jobs_of in todo.values() for job in jobs_of if job.key not in existing})
    outcome.cached_images = len(existing)
    console.print(f"{todo_count} images to generate ({len(existing)} already in the store)")

    if todo_count and not stop_requested(stop):
        _generate(spec, store, run_id, device, resolved, todo, existing, embeddings, outcome, console, stop)

    cells = _score_cells(store, run_id, references)
    plan = plan_scoring(store, run_id, prepared, cells)
    set_plan = plan_sets(store, run_id, prepared, cells)
    outcome.cached_scores = plan.cached + set_plan.cached
    console.print(f"{plan.count + set_plan.count} scores to compute ({outcome.cached_scores} already in the store)")
    if not todo_count and not plan.count and not set_plan.count:
        console.print("0 images to generate, 0 to score: everything is already in the store")
    print_notes(plan.truncated, plan.skipped, console)
    if (plan.count or set_plan.count) and not stop_requested(stop):
        with _progress(console) as progress:
            tasks: dict[str, int] = {}

            def advance(label: str, done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = progress.add_task(label, total=total)
                progress.update(tasks[label], completed=done)

            report = execute_scoring(store, prepared, plan, device, advance, stop=stop)
            set_report = execute_sets(store, prepared, set_plan, device, advance, stop=stop)
        outcome.scored = report.scored + set_report.scored
        for scorer, image_key, message in report.failures:
            store.put_failure(run_id, "score", message, image_key=image_key, scorer=scorer)
        for scorer, checkpoint, suite, message in set_report.failures:
            store.put_failure(run_id, "set-score", f"suite '{suite}': {message}", checkpoint=checkpoint,
                              scorer=scorer)

    embedding_record = _embedding_record(embeddings, jobs, store, run_id, console)
    provenance = {**provenance, "text_truncated": plan.truncated, "skipped": plan.skipped,
                  "checkpoints": outcome.models, "embeddings": embedding_record,
                  "scorer_dtypes": {p.name: p.backbone.dtype for p in prepared},
                  "duration_s": round(time.perf_counter() - started, 3)}
    outcome.interrupted = stop_requested(stop)
    status = ("interrupted" if outcome.interrupted else
              "failed" if len(outcome.failed_checkpoints) == len(spec.checkpoints) else "ok")
    store.finish_run(run_id, status, provenance)
    outcome.failures = Counter(str(failure["scope"]) for failure in store.run_failures(run_id))
    # Also after a stop: the outputs then show what the run has so far.
    outcome.results_path, outcome.report_path = write_outputs(store, run_id, console=console)
    return outcome


def _mark_interrupted(store: Store) -> None:
    """Mark the run this process started (the store's latest: it holds the lock) as interrupted."""
    try:
        run = store.latest_run()
        if run is not None and run["status"] == "running":
            store.finish_run(int(run["run_id"]), "interrupted")
    except sqlite3.Error:  # the database may not be writable either (same full disk); the next run marks it
        pass


def _plan_images(spec: BenchmarkSpec, cases: list[RunnableCase], store: Store, run_id: int, dtype: str,
                 embeddings: EmbeddingLibrary,
                 outcome: RunOutcome, console: Console
                 ) -> tuple[dict[str, ResolvedCheckpoint], dict[str, list[ImageJob]]]:
    generation = spec.generation
    settings = SamplingSettings(sampler=generation.sampler, steps=generation.steps, cfg=generation.cfg,
                                width=generation.width, height=generation.height, dtype=dtype,
                                hires=hires_settings(generation.hires, store), clip_skip=generation.clip_skip)
    backend = backend_id()
    resolved: dict[str, ResolvedCheckpoint] = {}
    jobs: dict[str, list[ImageJob]] = {}
    items: list[RunItem] = []
    for checkpoint in spec.checkpoints:
        try:
            resolved[checkpoint.name] = resolve_checkpoint(checkpoint, store, generation.vae)
        except CkptbenchError as error:
            _fail_checkpoint(store, run_id, checkpoint.name, checkpoint.source, None, str(error), outcome, console)
            continue
        ckpt = resolved[checkpoint.name]
        _log_detection(ckpt, console)
        outcome.models[ckpt.name] = dict(ckpt.detection)
        store.put_run_checkpoint(run_id, ckpt.name, ckpt.source, ckpt.sha256, "ok", None)
        jobs[ckpt.name] = []
        for seeds, case, loras in cases:
            inputs = case.pixel_inputs(generation.negative_prompt)
            used = _embeddings_used(embeddings, inputs["prompt"], inputs["negative_prompt"],
                                    schedule_steps(generation.sampler, generation.steps))
            for seed in seeds:
                job = ImageJob(checkpoint=ckpt.name, checkpoint_sha256=ckpt.sha256, case=case, seed=seed,
                               prompt=inputs["prompt"], negative_prompt=inputs["negative_prompt"],
                               settings=settings, backend=backend, checkpoint_identity=ckpt.identity,
                               loras=loras, embeddings=used)
                jobs[ckpt.name].append(job)
                items.append(RunItem(ckpt.name, case.suite, case.case_id, case.prompt, seed, job.key))
    store.put_run_items(run_id, items)
    return resolved, jobs


def _log_detection(ckpt: ResolvedCheckpoint, console: Console) -> None:
    found = ckpt.detection
    vae = found.get("vae")
    vae_text = Path(vae["path"]).name if isinstance(vae, dict) else (vae or "none")
    console.print(f"{ckpt.name}: {ckpt.family}, {ckpt.prediction}-prediction ({found.get('prediction_source')}); "
                  f"VAE: {vae_text}; config: {found.get('config')}", highlight=False)
    for warning in found.get("warnings", []):
        console.print(f"[yellow]warning[/]: {ckpt.name}: {warning}", highlight=False)


def _runnable_cases(spec: BenchmarkSpec, suites: list[LoadedSuite], store: Store, run_id: int, console: Console
                    ) -> tuple[list[RunnableCase], dict[tuple[str, str], ReferenceSet]]:
    """Every case with its seeds, its LoRAs resolved to files and its reference images checked and hashed
    (before any image is made); a case whose LoRA or reference image is missing or unreadable is recorded
    and skipped."""
    generation = spec.generation
    library = LoraLibrary(generation.lora_dirs, generation.default_lora_weight, generation.allow_pickle_loras,
                          store)
    cases: list[RunnableCase] = []
    references: dict[tuple[str, str], ReferenceSet] = {}
    for suite, case in ((loaded, case) for loaded in suites for case in loaded.cases):
        where = f"case {case.suite}/{case.case_id}"
        try:
            loras = resolve_case_loras(case, library)
            if case.references:
                references[(case.suite, case.case_id)] = reference_set(case.references, store, where)
        except (CkptbenchError, ValueError) as error:
            message = str(error) if str(error).startswith(where) else f"{where}: {error}"
            store.put_failure(run_id, "case", message)
            console.print(f"[red]skipped[/]: {escape(message)}", highlight=False)
            continue
        cases.append((suite.seeds, case, loras))
    return cases, references


def _embeddings_used(library: EmbeddingLibrary, prompt: str, negative_prompt: str, steps: int
                     ) -> tuple[tuple[str, str], ...]:
    """(name, sha256) of each embedding the prompts name: the files change the pixels, so they key the image."""
    names = set(library.used_in(prompt, steps=steps)) | set(library.used_in(negative_prompt, True, steps))
    return tuple((name, library.sha256(name)) for name in sorted(names))


def _embedding_record(library: EmbeddingLibrary, jobs: dict[str, list[ImageJob]], store: Store, run_id: int,
                      console: Console) -> dict[str, object]:
    """Which embeddings the run used, and prompt words that look like an embedding but name none.

    A word that names no embedding is a plain word, as in A1111 (it cannot be told from any other word), so
    a near miss is not an error; it is recorded as a warning with the run, where the report lists it."""
    if not library.files:
        return {}
    all_jobs = [job for jobs_of in jobs.values() for job in jobs_of]
    used = {name: sha256 for job in all_jobs for name, sha256 in job.embeddings}
    prompts = {pair for job in all_jobs for pair in ((job.prompt, False), (job.negative_prompt, True))}
    pairs = library.near_miss_pairs(prompts)
    for word, name in pairs:
        message = (f"prompt word '{word}' looks like embedding '{name}' ({library.files[name]}) but does not name "
                   f"it, so it is read as plain words; write '{name}' in the prompt to use the embedding.")
        store.put_failure(run_id, "warning", message)
        console.print(f"[yellow]note[/]: {escape(message)}", highlight=False)
    return {"used": used, "unused": sorted(set(library.files) - set(used)),
            "near_misses": [near_miss_note(word, name) for word, name in pairs]}


def _generate(spec: BenchmarkSpec, store: Store, run_id: int, device: torch.device,
              resolved: dict[str, ResolvedCheckpoint], todo: dict[str, list[ImageJob]], existing: set[str],
              embeddings: EmbeddingLibrary, outcome: RunOutcome, console: Console, stop: StopFlag | None) -> None:
    generator = DiffusersGenerator(device, spec.generation.batch_size,
                                   allow_pickle_loras=spec.generation.allow_pickle_loras, embeddings=embeddings)
    done_keys: set[str] = set()
    warned: set[tuple[str, str]] = set()
    with _progress(console) as progress:
        for name, jobs in todo.items():
            # The same image may be asked for twice (one file under two names): make it once.
            jobs = _unique(job for job in jobs if job.key not in done_keys)
            if not jobs or stop_requested(stop):
                continue
            task = progress.add_task(f"generating with {name}", total=len(jobs))
            try:
                for result in generator.generate(resolved[name], jobs, stop=stop):
                    if result.job.key in existing:
                        pass  # remade only to keep its batch as it was; the stored copy stays
                    elif isinstance(result, FailedImage):
                        store.put_failure(run_id, "image", result.error, checkpoint=name, image_key=result.job.key)
                        if (name, result.error) not in warned:  # said once, recorded for every image
                            warned.add((name, result.error))
                            console.print(f"[red]failed[/]: {escape(f'{name}: {result.error}')}", highlight=False)
                    else:
                        for warning in result.warnings:  # once per checkpoint, not once per image
                            if (name, warning) not in warned:
                                warned.add((name, warning))
                                store.put_failure(run_id, "warning", warning, checkpoint=name,
                                                  image_key=result.job.key)
                        job = result.job
                        store.put_image(job.key, result.image, result.infotext,
                                        checkpoint_sha256=job.checkpoint_sha256, prompt=job.prompt,
                                        negative_prompt=job.negative_prompt, seed=job.seed,
                                        settings=job.settings.as_dict(), backend=job.backend,
                                        seconds=result.seconds)
                        outcome.generated += 1
                        done_keys.add(job.key)
                    progress.advance(task)
            except DiskFullError:
                raise  # not the checkpoint's fault: the run stops, resumable
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
    console.print(f"[red]failed[/]: {escape(message)}", highlight=False)


def print_notes(truncated: dict[str, dict[str, int]], skipped: dict[str, dict[str, int]], console: Console) -> None:
    for scorer, suites in truncated.items():
        for suite, count in suites.items():
            console.print(f"[yellow]note[/]: {count} prompt(s) of suite '{suite}' are longer than the text "
                          f"encoder's context and are truncated for {scorer}")
    for scorer, reasons in skipped.items():
        for reason, count in reasons.items():
            hint = f" (set [scorers.{scorer}] references to give a default)" if "reference" in reason else ""
            console.print(f"[yellow]note[/]: {escape(f'{scorer} skips {count} image(s): {reason}{hint}')}",
                          highlight=False)


def _score_cells(store: Store, run_id: int, references: dict[tuple[str, str], ReferenceSet]
                 ) -> Sequence[ScoreCell]:
    items = store.run_items(run_id)
    present = items[items["image"].notna()]
    return [ScoreCell(item=int(row.item), checkpoint=str(row.checkpoint), suite=str(row.suite),
                      image_key=str(row.image_key), image_path=store.root / str(row.image), prompt=str(row.prompt),
                      references=references.get((str(row.suite), str(row.case_id))))
            for row in present.itertuples()]
