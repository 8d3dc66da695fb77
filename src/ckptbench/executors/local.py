"""The default executor: every task in this process, one after the other, results streamed as they come."""

from __future__ import annotations

import platform
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from ckptbench.device import resolve_device
from ckptbench.executors.base import GenerationEvent, GenerationTask, Progress, ScoringOutcome, TaskEnd
from ckptbench.executors.reproducibility import driver_threads, reproducibility, use_threads
from ckptbench.executors.tasks import device_name, generation_events, score_images, score_sets, scoring_groups
from ckptbench.metrics.engine import PreparedScorer, ScoringPlan
from ckptbench.metrics.set_engine import SetPlan
from ckptbench.stop import StopFlag, stop_requested
from ckptbench.store import Store


class LocalExecutor:
    name = "local"

    def __init__(self) -> None:
        self._device: torch.device | None = None
        self.threads = driver_threads()  # every task runs with these, as a Ray worker would

    def device(self, requested: str) -> torch.device:
        self._device = resolve_device(requested)
        return self._device

    def workers(self) -> int:
        return 1

    def describe(self) -> dict[str, Any]:
        device = self._device or torch.device("cpu")
        return {"name": self.name, "host": platform.node(), "device_name": device_name(device),
                "reproducibility": reproducibility(device.type, self.threads)}

    def generate(self, tasks: Sequence[GenerationTask], stop: StopFlag | None = None) -> Iterator[GenerationEvent]:
        use_threads(self.threads)
        for task in tasks:
            if stop_requested(stop):
                return
            device = resolve_device(task.options.device)
            try:
                yield from generation_events(task, device, stop)
            except Exception as error:  # one bad checkpoint must not sink the run
                yield TaskEnd(task, device.type, device_name(device),
                              error=f"{task.label}: generation failed ({type(error).__name__}: {error})")

    def score(self, store: Store, prepared: Sequence[PreparedScorer], plan: ScoringPlan, set_plan: SetPlan,
              device: torch.device, advance: Progress | None, stop: StopFlag | None = None) -> ScoringOutcome:
        use_threads(self.threads)
        outcome = ScoringOutcome()
        for entries in scoring_groups(prepared, plan):
            if not stop_requested(stop):
                outcome.add(score_images(store, entries, plan, device, advance, stop))
        for entry in prepared:
            if set_plan.todo.get(entry.name) and not stop_requested(stop):
                outcome.add(score_sets(store, entry, set_plan, device, advance, stop))
        return outcome

    def close(self) -> None:
        pass

