"""The executor contract: the runner hands over generation and scoring work as tasks and gets results back.

A generation task is one checkpoint with a shard of its jobs (whole batches, so a shard makes the same
pixels as the whole), run by one ``DiffusersGenerator`` that loads the checkpoint once. It yields one
``ImageOutcome`` per job (the PNG already encoded, or the reason it failed) and ends with a ``TaskEnd``
(what the task chose and measured, or why it failed as a whole). The runner alone writes the store.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from ckptbench.generate.base import ImageJob
from ckptbench.generate.batching import BatchSize, plan_batches
from ckptbench.metrics.engine import PreparedScorer, ScoringPlan, ScoringReport
from ckptbench.metrics.set_engine import SetPlan, SetReport
from ckptbench.models.checkpoint import ResolvedCheckpoint
from ckptbench.stop import StopFlag
from ckptbench.store import Store

Progress = Callable[[str, int, int], None]

MAX_AUTO_SHARD = 64  # images per generation task when the spec leaves it to us
AUTO_PLANNING_BATCH = 4  # shards of batch_size = "auto" are cut at multiples of this


@dataclass(frozen=True)
class GeneratorOptions:
    """How a worker builds its generator; plain data, so it travels to any process."""

    device: str  # the spec's request ('auto', 'cpu', 'cuda', …), resolved where the task runs
    batch_size: BatchSize
    allow_pickle_loras: bool = False
    embedding_files: tuple[tuple[str, Path], ...] = ()  # (name, file) of every embedding the library found
    allow_pickle_embeddings: bool = False
    compile_unet: bool = False


@dataclass(frozen=True)
class GenerationTask:
    checkpoint: ResolvedCheckpoint
    jobs: tuple[ImageJob, ...]
    options: GeneratorOptions
    shard: int = 0
    shards: int = 1

    @property
    def label(self) -> str:
        where = f" (shard {self.shard + 1} of {self.shards}, {len(self.jobs)} images)" if self.shards > 1 else ""
        return f"checkpoint '{self.checkpoint.name}'{where}"


@dataclass(frozen=True)
class ImageOutcome:
    task: GenerationTask
    key: str
    png: bytes | None  # None when the image failed
    infotext: str = ""
    seconds: float = 0.0
    warnings: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True)
class TaskEnd:
    task: GenerationTask
    device_kind: str = ""
    device_name: str = ""
    runtime: dict[str, Any] = field(default_factory=dict)  # fast path, batch size, load seconds
    error: str | None = None  # the task failed as a whole (after any retries)


GenerationEvent = ImageOutcome | TaskEnd


@dataclass(frozen=True)
class ScoringMeasure:
    """Time spent on one backbone in one scoring task, for throughput records."""

    backbone: str  # workload label: backbone id and dtype
    device_kind: str
    device_name: str
    images: int
    seconds: float
    load_seconds: float


@dataclass
class ScoringOutcome:
    report: ScoringReport = field(default_factory=ScoringReport)
    set_report: SetReport = field(default_factory=SetReport)
    measures: list[ScoringMeasure] = field(default_factory=list)

    def add(self, part: ScoringOutcome) -> None:
        self.report.scored += part.report.scored
        self.report.forward_images += part.report.forward_images
        self.report.failures.extend(part.report.failures)
        self.set_report.scored += part.set_report.scored
        self.set_report.failures.extend(part.set_report.failures)
        self.measures.extend(part.measures)


class Executor(Protocol):
    """Where the work runs. ``local``: this process; ``ray``: Ray tasks on a cluster."""

    name: str

    def device(self, requested: str) -> torch.device:
        """The device the work will run on, for a spec's request ('auto', 'cpu', 'cuda', …): it decides the
        'auto' dtype, which is part of every image and score key."""
        ...

    def workers(self) -> int:
        """How many generation tasks can run at once."""
        ...

    def describe(self) -> dict[str, Any]:
        """Provenance: the executor and the resources it ran on."""
        ...

    def generate(self, tasks: Sequence[GenerationTask], stop: StopFlag | None = None) -> Iterator[GenerationEvent]:
        """Run every task; yield each image's outcome and one ``TaskEnd`` per task, in any order. Once ``stop``
        is set, no new work starts: what is in progress is finished where it runs in this process (the batch),
        and cancelled where it runs elsewhere (its shard is redone by the next run)."""
        ...

    def score(self, store: Store, prepared: Sequence[PreparedScorer], plan: ScoringPlan, set_plan: SetPlan,
              device: torch.device, advance: Progress | None, stop: StopFlag | None = None) -> ScoringOutcome:
        """Compute the planned scores (per-image scorers first, then set scorers) into ``store``; ``stop`` as
        for ``generate``."""
        ...

    def close(self) -> None: ...


def generation_tasks(checkpoint: ResolvedCheckpoint, jobs: Sequence[ImageJob], options: GeneratorOptions,
                     shard_images: int) -> list[GenerationTask]:
    """Cut one checkpoint's jobs into tasks of whole batches, about ``shard_images`` images each
    (0: one task for all of them)."""
    if not jobs:
        return []
    batch = planning_batch_size(options.batch_size)
    batches = plan_batches(jobs, batch)
    if shard_images <= 0:
        return [GenerationTask(checkpoint, tuple(job for b in batches for job in b), options)]
    per_shard = max(1, math.ceil(shard_images / batch))  # batches per shard
    groups = [batches[start : start + per_shard] for start in range(0, len(batches), per_shard)]
    return [GenerationTask(checkpoint, tuple(job for b in group for job in b), options, index, len(groups))
            for index, group in enumerate(groups)]


def planning_batch_size(batch_size: BatchSize) -> int:
    """The batch size work is planned and cut with: the spec's, or for 'auto' (chosen on the device, later)
    a fixed multiple."""
    return batch_size if isinstance(batch_size, int) else AUTO_PLANNING_BATCH


def auto_shard_images(jobs_per_checkpoint: Sequence[int], workers: int) -> int:
    """Enough shards per checkpoint that ``workers`` tasks can run at once, at most ``MAX_AUTO_SHARD`` images
    each (a lost task then costs little to redo, and a task's results stay small)."""
    counts = [count for count in jobs_per_checkpoint if count]
    if not counts:
        return 0
    shards_per_checkpoint = max(1, math.ceil(workers / len(counts)))
    return min(MAX_AUTO_SHARD, max(1, math.ceil(max(counts) / shards_per_checkpoint)))
