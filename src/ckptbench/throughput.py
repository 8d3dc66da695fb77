"""Measured throughput: what a run records about its speed, and the estimate a dry run makes from it.

Generation is measured in work units (sampling steps × megapixels, both hires passes) per second for each
model family and dtype on each device; scoring in images per second through each backbone. A task's
fixed cost (loading a checkpoint or a backbone) is kept apart, so an estimate is
``units × seconds-per-unit + tasks × fixed seconds per task``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ckptbench.device import resolve_dtype_name
from ckptbench.executors.base import ImageOutcome, ScoringMeasure, TaskEnd
from ckptbench.generate.base import ImageJob
from ckptbench.plan import generation_workload, work_units
from ckptbench.store import Throughput

Group = tuple[str, str, str, str]  # (stage, workload, device kind, device name)


@dataclass
class _Sums:
    items: int = 0
    units: float = 0.0
    seconds: float = 0.0
    fixed: float = 0.0
    tasks: int = 0


@dataclass
class GenerationMeter:
    """Sums the seconds of the images a run makes, per workload and device, and keeps each checkpoint's
    runtime choices (fast path, batch size, devices) for provenance."""

    executor: str
    runtime: dict[str, dict[str, object]] = field(default_factory=dict)
    _sums: dict[Group, _Sums] = field(default_factory=lambda: defaultdict(_Sums))
    _pending: dict[str, list[tuple[ImageJob, float]]] = field(default_factory=lambda: defaultdict(list))

    def image_made(self, event: ImageOutcome, job: ImageJob) -> None:
        # The device is known when the task ends (a Ray task's images come back with its end).
        self._pending[event.task.label].append((job, event.seconds))

    def task_ended(self, event: TaskEnd) -> None:
        task = event.task
        made = self._pending.pop(task.label, [])
        if event.error is None or made:
            workload = generation_workload(task.checkpoint, task.jobs[0].settings)
            sums = self._sums[("generate", workload, event.device_kind, event.device_name)]
            sums.items += len(made)
            sums.units += sum(work_units(job.settings) for job, _ in made)
            sums.seconds += sum(seconds for _, seconds in made)
            sums.fixed += float(event.runtime.get("load_seconds", 0.0))  # type: ignore[arg-type]
            sums.tasks += 1
        if event.runtime:
            record = self.runtime.setdefault(task.checkpoint.name, {})
            devices = record.setdefault("devices", [])
            assert isinstance(devices, list)
            if event.device_name not in devices:
                devices.append(event.device_name)
            for key, value in event.runtime.items():
                if key == "load_seconds":
                    record[key] = round(float(record.get(key, 0.0)) + float(value), 3)  # type: ignore[arg-type]
                else:
                    record.setdefault(key, value)

    def rows(self) -> list[Throughput]:
        return _rows(self._sums, self.executor)


def scoring_throughput(measures: Sequence[ScoringMeasure], executor: str) -> list[Throughput]:
    sums: dict[Group, _Sums] = defaultdict(_Sums)
    for measure in measures:
        group = sums[("score", measure.backbone, measure.device_kind, measure.device_name)]
        group.items += measure.images
        group.units += measure.images
        group.seconds += measure.seconds
        group.fixed += measure.load_seconds
        group.tasks += 1
    return _rows(sums, executor)


def _rows(sums: dict[Group, _Sums], executor: str) -> list[Throughput]:
    return [Throughput(stage, workload, kind, name, executor, s.items, s.units, s.seconds, s.fixed, s.tasks)
            for (stage, workload, kind, name), s in sums.items() if s.tasks]


@dataclass(frozen=True)
class Rate:
    seconds_per_unit: float | None  # None: never measured with any work
    fixed_per_task: float


def rates(history: Sequence[Throughput]) -> dict[tuple[str, str], dict[tuple[str, str], Rate]]:
    """(device kind, device name) → (stage, workload) → measured rate, over every recorded run."""
    sums: dict[tuple[str, str], dict[tuple[str, str], _Sums]] = defaultdict(lambda: defaultdict(_Sums))
    for row in history:
        group = sums[(row.device_kind, row.device_name)][(row.stage, row.workload)]
        group.units += row.units
        group.seconds += row.seconds
        group.fixed += row.fixed_seconds
        group.tasks += row.tasks
    return {device: {work: Rate(s.seconds / s.units if s.units else None, s.fixed / s.tasks if s.tasks else 0.0)
                     for work, s in by_work.items()}
            for device, by_work in sums.items()}


@dataclass(frozen=True)
class Need:
    """New work of one kind: ``units`` of work (steps × megapixels, or images) in ``tasks`` tasks.

    ``what`` is the model family or the backbone; ``dtype`` the spec's, so 'auto' is matched with the
    dtype each kind of device gives it (fp32 on a CPU, fp16 on a GPU).
    """

    stage: str
    what: str
    dtype: str
    units: float
    tasks: int

    def workload(self, device_kind: str) -> str:
        dtype = resolve_dtype_name(self.dtype, torch.device(device_kind)) if self.dtype == "auto" else self.dtype
        return f"{self.what} {dtype}"


@dataclass(frozen=True)
class Estimate:
    device_kind: str
    device_name: str
    seconds: float  # device time for the work that was measured on this device
    missing: tuple[str, ...]  # workloads never measured here


def estimate(needs: Sequence[Need], history: Sequence[Throughput]) -> list[Estimate]:
    """Device time of ``needs`` on every device that earlier runs measured, fastest first."""
    estimates = []
    for (kind, name), known in rates(history).items():
        seconds, missing = 0.0, []
        for need in needs:
            if not need.units:
                continue
            workload = need.workload(kind)
            rate = known.get((need.stage, workload))
            if rate is None or rate.seconds_per_unit is None:
                missing.append(f"{need.stage} {workload}")
                continue
            seconds += need.units * rate.seconds_per_unit + need.tasks * rate.fixed_per_task
        estimates.append(Estimate(kind, name, seconds, tuple(missing)))
    return sorted(estimates, key=lambda e: (len(e.missing), e.seconds))
