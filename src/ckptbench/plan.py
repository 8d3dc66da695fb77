"""Planning a run: every image it asks for, keyed by content, without writing anything or loading a model.

``plan_images`` resolves the checkpoints (file digests, detection from the tensors' names) and the cases'
LoRAs and embeddings, and returns the jobs; what could not be resolved is returned too, for the runner to
record (a real run) or to show (a dry run).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console
from rich.markup import escape

from ckptbench.device import resolve_dtype_name
from ckptbench.errors import CkptbenchError
from ckptbench.executors.base import (
    Executor,
    GenerationTask,
    GeneratorOptions,
    auto_shard_images,
    generation_tasks,
    planning_batch_size,
)
from ckptbench.generate.base import ImageJob, LoraUse, SamplingSettings
from ckptbench.generate.batching import BatchSize, backend_id, batches_with_missing
from ckptbench.generate.embeddings import EmbeddingLibrary
from ckptbench.generate.hires import hires_settings, second_pass_schedule, target_size
from ckptbench.generate.lora import LoraLibrary
from ckptbench.generate.samplers import schedule_steps
from ckptbench.metrics.engine import PreparedScorer, prepare_scorers
from ckptbench.metrics.references import ReferenceSet, reference_set
from ckptbench.metrics.set_engine import check_planned_sizes
from ckptbench.models.checkpoint import ResolvedCheckpoint, resolve_checkpoint
from ckptbench.models.families import get_family
from ckptbench.spec import BenchmarkSpec, CheckpointSpec
from ckptbench.store import RunItem, Store
from ckptbench.suites import Case
from ckptbench.suites.load import LoadedSuite
from ckptbench.suites.loras import resolve_case_loras

RunnableCase = tuple[tuple[int, ...], Case, tuple[LoraUse, ...]]  # seeds, case, its LoRAs


@dataclass
class ImagePlan:
    resolved: dict[str, ResolvedCheckpoint] = field(default_factory=dict)
    jobs: dict[str, list[ImageJob]] = field(default_factory=dict)  # checkpoint name → its jobs
    items: list[RunItem] = field(default_factory=list)  # the run's cells, in order
    unresolved: list[tuple[CheckpointSpec, str]] = field(default_factory=list)  # checkpoints that cannot be used
    skipped_cases: list[str] = field(default_factory=list)  # why a case was left out
    # (suite, case id) → the case's reference images, checked and hashed before any image is made
    references: dict[tuple[str, str], ReferenceSet] = field(default_factory=dict)


@dataclass(frozen=True)
class RunSetup:
    """What a run (or a dry run) settles before planning its images."""

    device: torch.device
    dtype: str
    prepared: list[PreparedScorer]
    embeddings: EmbeddingLibrary


def prepare_run(spec: BenchmarkSpec, suites: list[LoadedSuite], store: Store, work: Executor) -> RunSetup:
    """The device the work runs on and its dtype, the scorers resolved and the embedding files found."""
    device = work.device(spec.generation.device)  # where the work runs decides the 'auto' dtype
    dtype = resolve_dtype_name(spec.generation.dtype, device)
    # Scorer weights are resolved before any image is made: a missing model should stop the run now,
    # not after hours of generation.
    prepared = prepare_scorers(spec.scorers, device, store)
    check_planned_sizes(prepared, {suite.name: len(suite.cases) * len(suite.seeds) for suite in suites})
    embeddings = EmbeddingLibrary(spec.generation.embedding_dirs, spec.generation.allow_pickle_embeddings, store)
    return RunSetup(device, dtype, prepared, embeddings)


def plan_images(spec: BenchmarkSpec, suites: list[LoadedSuite], store: Store, dtype: str,
                embeddings: EmbeddingLibrary, console: Console) -> ImagePlan:
    generation = spec.generation
    settings = SamplingSettings(sampler=generation.sampler, steps=generation.steps, cfg=generation.cfg,
                                width=generation.width, height=generation.height, dtype=dtype,
                                hires=hires_settings(generation.hires, store), clip_skip=generation.clip_skip)
    backend = backend_id()
    plan = ImagePlan()
    cases = _runnable_cases(spec, suites, store, plan, console)
    steps = schedule_steps(generation.sampler, generation.steps)
    # A case's prompts and the embeddings they use do not depend on the checkpoint: worked out (tokenized,
    # files hashed) for the first checkpoint that resolves, reused for the others.
    prompts: dict[int, tuple[dict[str, str], tuple[tuple[str, str], ...]]] = {}
    for checkpoint in spec.checkpoints:
        try:
            ckpt = resolve_checkpoint(checkpoint, store, generation.vae)
        except CkptbenchError as error:
            plan.unresolved.append((checkpoint, str(error)))
            continue
        plan.resolved[ckpt.name] = ckpt
        log_detection(ckpt, console)
        ckpt_settings = family_settings(ckpt, settings, generation.distilled_cfg, console)
        plan.jobs[ckpt.name] = []
        for index, (seeds, case, loras) in enumerate(cases):
            if index not in prompts:
                inputs = case.pixel_inputs(generation.negative_prompt)
                prompts[index] = inputs, _embeddings_used(embeddings, inputs["prompt"], inputs["negative_prompt"],
                                                          steps)
            inputs, used = prompts[index]
            for seed in seeds:
                job = ImageJob(checkpoint=ckpt.name, checkpoint_sha256=ckpt.sha256, case=case, seed=seed,
                               prompt=inputs["prompt"], negative_prompt=inputs["negative_prompt"],
                               settings=ckpt_settings, backend=backend, checkpoint_identity=ckpt.identity,
                               loras=loras, embeddings=used)
                plan.jobs[ckpt.name].append(job)
                plan.items.append(RunItem(ckpt.name, case.suite, case.case_id, case.prompt, seed, job.key))
    return plan


def images_todo(store: Store, jobs: dict[str, list[ImageJob]], batch_size: BatchSize
                ) -> tuple[set[str], dict[str, list[ImageJob]]]:
    """The planned images already in the store, and the jobs to run (``unique_todo``)."""
    existing = store.existing_images(job.key for jobs_of in jobs.values() for job in jobs_of)
    return existing, unique_todo(jobs, existing, batch_size)


def unique_todo(jobs: dict[str, list[ImageJob]], existing: set[str], batch_size: BatchSize
                ) -> dict[str, list[ImageJob]]:
    """Each checkpoint's jobs of every planned batch that lacks an image in the store, whole: an image made
    after an interruption must come from the same batch as in an uninterrupted run (batched kernels round
    differently for different batch contents), so a batch cut short is remade and the runner keeps the copies
    it already has. An image asked for twice (one file under two names) is made once, by the first checkpoint
    that asks for it."""
    planned: set[str] = set()
    todo: dict[str, list[ImageJob]] = {}
    for name, jobs_of in jobs.items():
        fresh = [job for job in jobs_of if job.key not in planned]
        todo[name] = batches_with_missing(fresh, existing, planning_batch_size(batch_size))
        planned.update(job.key for job in todo[name])
    return todo


def generation_plan(spec: BenchmarkSpec, workers: int, resolved: dict[str, ResolvedCheckpoint],
                      todo: dict[str, list[ImageJob]], embeddings: EmbeddingLibrary) -> list[GenerationTask]:
    """The generation tasks of a run: one per checkpoint, or shards of whole batches when several workers
    can run at once (or the spec sets ``shard_images``)."""
    generation = spec.generation
    options = GeneratorOptions(device=generation.device, batch_size=generation.batch_size,
                               allow_pickle_loras=generation.allow_pickle_loras,
                               embedding_files=tuple(sorted(embeddings.files.items())),
                               allow_pickle_embeddings=generation.allow_pickle_embeddings,
                               compile_unet=generation.compile)
    shard = spec.benchmark.shard_images
    if workers > 1 and not shard:
        shard = auto_shard_images([len(jobs) for jobs in todo.values()], workers)
    return [task for name, jobs in todo.items() for task in generation_tasks(resolved[name], jobs, options, shard)]


def work_units(settings: SamplingSettings) -> float:
    """Sampling steps × megapixels of one image (both passes of the hires fix): what generation time scales with."""
    units = settings.steps * settings.width * settings.height / 1e6
    if settings.hires is not None:
        width, height = target_size(settings.width, settings.height, settings.hires.scale)
        units += second_pass_schedule(settings.steps, settings.hires)[2] * width * height / 1e6
    return units


def generation_workload(checkpoint: ResolvedCheckpoint, settings: SamplingSettings) -> str:
    return f"{checkpoint.family} {settings.dtype}"


def family_settings(ckpt: ResolvedCheckpoint, settings: SamplingSettings, distilled_cfg: float, console: Console
                    ) -> SamplingSettings:
    """The run's sampling settings as the checkpoint's family samples them (Flux, SD3.5: flow-matching Euler)."""
    adapted, note = get_family(ckpt.family).sampling_settings(settings, distilled_cfg, ckpt.variant)
    if note:
        console.print(f"{ckpt.name}: {note}", highlight=False)
    return adapted


def log_detection(ckpt: ResolvedCheckpoint, console: Console) -> None:
    found = ckpt.detection
    vae = found.get("vae")
    vae_text = Path(vae["path"]).name if isinstance(vae, dict) else (vae or "none")
    schedule = f", zero terminal SNR ({found.get('zero_terminal_snr_source')})" if ckpt.zero_terminal_snr else ""
    console.print(f"{ckpt.name}: {ckpt.family}, {ckpt.prediction}-prediction ({found.get('prediction_source')})"
                  f"{schedule}; VAE: {vae_text}; config: {found.get('config')}", highlight=False)
    for warning in found.get("warnings", []):
        console.print(f"[yellow]warning[/]: {ckpt.name}: {warning}", highlight=False)


def _runnable_cases(spec: BenchmarkSpec, suites: list[LoadedSuite], store: Store, plan: ImagePlan,
                    console: Console) -> list[RunnableCase]:
    """Every case with its seeds, its LoRAs resolved to files and its reference images checked and hashed
    (into ``plan.references``); a case whose LoRA or reference image is missing or unreadable is left out
    (and noted in ``plan.skipped_cases``), the other cases run."""
    generation = spec.generation
    library = LoraLibrary(generation.lora_dirs, generation.default_lora_weight, generation.allow_pickle_loras,
                          store)
    cases: list[RunnableCase] = []
    for suite, case in ((loaded, case) for loaded in suites for case in loaded.cases):
        where = f"case {case.suite}/{case.case_id}"
        try:
            loras = resolve_case_loras(case, library)
            if case.references:
                plan.references[(case.suite, case.case_id)] = reference_set(case.references, store, where)
        except (CkptbenchError, ValueError) as error:
            message = str(error) if str(error).startswith(where) else f"{where}: {error}"
            plan.skipped_cases.append(message)
            console.print(f"[red]skipped[/]: {escape(message)}", highlight=False)
            continue
        cases.append((suite.seeds, case, loras))
    return cases


def _embeddings_used(library: EmbeddingLibrary, prompt: str, negative_prompt: str, steps: int
                     ) -> tuple[tuple[str, str], ...]:
    """(name, sha256) of each embedding the prompts name: the files change the pixels, so they key the image."""
    names = set(library.used_in(prompt, steps=steps)) | set(library.used_in(negative_prompt, True, steps))
    return tuple((name, library.sha256(name)) for name in sorted(names))
