"""The work itself, the same in every executor: a generation task and a scoring task, run wherever they land.

Nothing here writes the store: a generation task yields encoded PNGs, a scoring task writes to the
``ScoreStore`` it is given (the store in this process, a ``StoreSnapshot`` in a Ray worker).
"""

from __future__ import annotations

import dataclasses
import platform
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from functools import cache
from pathlib import Path

import torch

from ckptbench.device import resolve_device
from ckptbench.errors import CkptbenchError
from ckptbench.executors.base import (
    GenerationEvent,
    GenerationTask,
    ImageOutcome,
    Progress,
    ScoringMeasure,
    ScoringOutcome,
    TaskEnd,
)
from ckptbench.executors.reproducibility import use_threads
from ckptbench.generate.base import FailedImage
from ckptbench.metrics.engine import PreparedScorer, ScoringPlan, execute_scoring
from ckptbench.metrics.features import ScoreStore
from ckptbench.metrics.set_engine import SetPlan, execute_sets
from ckptbench.stop import StopFlag
from ckptbench.store import encode_png


@cache
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def device_name(device: torch.device) -> str:
    """A name that tells devices of different speed apart: the GPU's model, or the CPU's with its threads."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"{_cpu_model()} ({threads} thread{'s' if threads > 1 else ''})"
    return device.type


def worker_device(requested: str) -> torch.device:
    """The device in a Ray worker: Ray shows a task only the GPU it was given, so any CUDA request is 'cuda'."""
    if requested.startswith("cuda"):
        return torch.device("cuda")
    return resolve_device(requested)


def generation_events(task: GenerationTask, device: torch.device, stop: StopFlag | None = None
                      ) -> Iterator[GenerationEvent]:
    """Make a task's images; input errors (a bad checkpoint file) end the task with its message, any other
    exception propagates (an executor may retry the task)."""
    # Imported here: diffusers and the text encoders are for generation only (scoring, dry runs and
    # planning import this module too).
    from ckptbench.generate.diffusers_backend import DiffusersGenerator
    from ckptbench.generate.embeddings import EmbeddingLibrary

    options = task.options
    library = EmbeddingLibrary.of_files(dict(options.embedding_files), options.allow_pickle_embeddings)
    generator = DiffusersGenerator(device, options.batch_size, allow_pickle_loras=options.allow_pickle_loras,
                                   embeddings=library, compile_unet=options.compile_unet)
    name = device_name(device)
    try:
        for result in generator.generate(task.checkpoint, task.jobs, stop=stop):
            if isinstance(result, FailedImage):
                yield ImageOutcome(task, result.job.key, None, error=result.error)
            else:
                yield ImageOutcome(task, result.job.key, encode_png(result.image, result.infotext), result.infotext,
                                   result.seconds, result.warnings)
    except CkptbenchError as error:  # the same input fails the same way again: no retry
        yield TaskEnd(task, device.type, name, generator.runtime, str(error))
        return
    yield TaskEnd(task, device.type, name, generator.runtime)


def run_generation(task: GenerationTask, threads: int) -> list[GenerationEvent]:
    """A generation task as a Ray worker runs it, with the driver's intra-op threads: every outcome at once (a
    shard is small)."""
    use_threads(threads)
    return list(generation_events(task, worker_device(task.options.device)))


def scoring_groups(prepared: Sequence[PreparedScorer], plan: ScoringPlan) -> list[list[PreparedScorer]]:
    """The per-image scorers with work to do, grouped by backbone (one forward pass per image per group)."""
    groups: dict[str, list[PreparedScorer]] = defaultdict(list)
    for entry in prepared:
        if plan.todo.get(entry.name):
            groups[entry.backbone.key].append(entry)
    return list(groups.values())


def split_plan(entries: list[PreparedScorer], plan: ScoringPlan, max_images: int) -> list[ScoringPlan]:
    """One backbone group's rows in parts of at most ``max_images`` distinct images."""
    keys = list(dict.fromkeys(row.cell.image_key for entry in entries for row in plan.todo.get(entry.name, [])))
    parts = []
    for start in range(0, len(keys), max_images):
        chunk = set(keys[start : start + max_images])
        parts.append(dataclasses.replace(plan, todo={
            entry.name: [row for row in plan.todo.get(entry.name, []) if row.cell.image_key in chunk]
            for entry in entries}))
    return parts


def workload(entry: PreparedScorer) -> str:
    return f"{entry.backbone.id} {entry.backbone.dtype}"


def score_images(store: ScoreStore, entries: list[PreparedScorer], plan: ScoringPlan, device: torch.device,
                 advance: Progress | None = None, stop: StopFlag | None = None) -> ScoringOutcome:
    """One backbone group's per-image scores, measured."""
    started = time.perf_counter()
    report = execute_scoring(store, entries, plan, device, advance, stop)
    seconds = time.perf_counter() - started
    measure = ScoringMeasure(workload(entries[0]), device.type, device_name(device), report.forward_images,
                             seconds - report.load_seconds, report.load_seconds)
    return ScoringOutcome(report=report, measures=[measure])


def score_sets(store: ScoreStore, entry: PreparedScorer, plan: SetPlan, device: torch.device,
               advance: Progress | None = None, stop: StopFlag | None = None) -> ScoringOutcome:
    """One set scorer's set scores, measured."""
    started = time.perf_counter()
    set_report = execute_sets(store, [entry], plan, device, advance, stop)
    seconds = time.perf_counter() - started
    measure = ScoringMeasure(workload(entry), device.type, device_name(device), set_report.forward_images,
                             seconds - set_report.load_seconds, set_report.load_seconds)
    return ScoringOutcome(set_report=set_report, measures=[measure])
