"""The Ray executor: generation shards and scoring groups as Ray tasks; the driver alone writes the store.

Each task asks for one GPU when the cluster has GPUs (one CPU otherwise), so Ray runs as many at once as
there are devices, and a checkpoint is loaded once per task. A task that raises, or whose worker dies, is
retried by Ray up to ``ray_max_retries`` times; after that its checkpoint shard (or its scorers) is
recorded as failed and the rest of the run goes on. Input errors (a checkpoint file that cannot be read)
end a task without a retry: the same input fails the same way again.

Workers must see the model files (checkpoints, VAEs, LoRAs, embeddings, scorer weights) at the same
paths as the driver — a shared file system or the same layout on every node; images and reference files
travel through Ray. ``ray`` is imported only when this executor is used (``pip install ckptbench[ray]``).
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch

from ckptbench.errors import SpecError
from ckptbench.executors.base import GenerationEvent, GenerationTask, Progress, ScoringOutcome, TaskEnd
from ckptbench.executors.reproducibility import driver_threads, reproducibility, use_threads
from ckptbench.executors.snapshot import ScoringPayload, Unpacked, pack, replay_writes
from ckptbench.executors.tasks import (
    run_generation,
    score_images,
    score_sets,
    scoring_groups,
    split_plan,
    worker_device,
)
from ckptbench.metrics.engine import PreparedScorer, ScoringPlan
from ckptbench.metrics.set_engine import SetPlan
from ckptbench.stop import StopFlag, stop_requested
from ckptbench.store import Store

# Images per scoring task: a task's images travel to the worker, and the backbone loads once per task.
SCORE_SHARD_IMAGES = 512


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise SpecError("executor 'ray' needs Ray, which is not installed; install it with "
                        "`pip install 'ckptbench[ray]'`, or use executor = 'local'.") from None
    return ray


def run_scoring(payload: ScoringPayload, requested_device: str, threads: int
                ) -> tuple[ScoringOutcome, list[tuple[str, tuple]]]:
    """A scoring task in a worker: score against the snapshot, return the outcome and the writes."""
    use_threads(threads)
    device = worker_device(requested_device)
    unpacked = Unpacked(payload)
    try:
        if unpacked.plan is not None:
            outcome = score_images(payload.snapshot, unpacked.entries, unpacked.plan, device)
        else:
            assert unpacked.set_plan is not None
            outcome = score_sets(payload.snapshot, unpacked.entries[0], unpacked.set_plan, device)
    finally:
        unpacked.close()
    return outcome, payload.snapshot.writes


class RayExecutor:
    name = "ray"

    def __init__(self, address: str | None = None, max_retries: int = 2) -> None:
        self.ray = _import_ray()
        self.address = address
        self.max_retries = max_retries
        self._started = False
        if not self.ray.is_initialized():
            try:
                self.ray.init(address=address, include_dashboard=False, log_to_driver=False,
                              logging_level="WARNING")
            except (ConnectionError, RuntimeError, ValueError) as error:
                raise SpecError(f"ray_address '{address}': cannot join the Ray cluster ({error}); start it with "
                                "`ray start --head`, fix the address, or leave ray_address unset for a local "
                                "instance.") from None
            self._started = True
        resources = self.ray.cluster_resources()
        self.gpus = int(resources.get("GPU", 0))
        self.cpus = int(resources.get("CPU", 0))
        self._requested = "auto"
        # Tasks run with the driver's intra-op threads (the local executor's), so the same image key gives the
        # same bytes under both; a CPU task asks for that many CPUs, as many as the largest node has at most.
        self.threads = driver_threads()
        node_cpus = [int(node.get("Resources", {}).get("CPU", 0)) for node in self.ray.nodes() if node.get("Alive")]
        self._task_cpus = max(1, min(self.threads, max(node_cpus, default=1)))

    def device(self, requested: str) -> torch.device:
        self._requested = requested
        if requested.startswith("cuda") and not self.gpus:
            raise SpecError(f"device '{requested}' was asked for but the Ray cluster has no GPU; use device = "
                            "'auto' or 'cpu'.")
        if requested == "auto":
            return torch.device("cuda" if self.gpus else "cpu")
        return torch.device("cuda" if requested.startswith("cuda") else requested)

    def _resources(self) -> dict[str, Any]:
        # One device per task: a GPU where the cluster has them and the spec does not ask for the CPU.
        if self._on_gpus():
            return {"num_gpus": 1}
        return {"num_cpus": self._task_cpus}

    def _on_gpus(self) -> bool:
        return bool(self.gpus) and self._requested != "cpu"

    def workers(self) -> int:
        return self.gpus if self._on_gpus() else max(1, self.cpus // self._task_cpus)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "address": self.address or "local instance", "driver_host": platform.node(),
                "cluster": {"CPU": self.cpus, "GPU": self.gpus, "nodes": len(self.ray.nodes())},
                "task_resources": self._resources(), "max_retries": self.max_retries,
                "reproducibility": reproducibility("cuda" if self._on_gpus() else "cpu", self.threads)}

    def _remote(self, function: Callable[..., Any]) -> Any:
        return self.ray.remote(function).options(max_retries=self.max_retries, retry_exceptions=True,
                                                 **self._resources())

    def _completed(self, refs: dict[Any, Any], stop: StopFlag | None
                   ) -> Iterator[tuple[Any, Any, BaseException | None]]:
        """(what a task was for, its result, its error after Ray's retries) as tasks finish; after a stop, the
        tasks still running are cancelled (their work is redone by the next run)."""
        pending = list(refs)
        try:
            while pending and not stop_requested(stop):
                done, pending = self.ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        result = self.ray.get(ref)
                    except Exception as error:  # the task failed every attempt, or its worker kept dying
                        yield refs.pop(ref), None, error
                    else:
                        yield refs.pop(ref), result, None
        finally:  # the caller stopped early (an interrupted run): tasks not yet done are not wanted
            for ref in pending:
                self.ray.cancel(ref)

    def generate(self, tasks: Sequence[GenerationTask], stop: StopFlag | None = None) -> Iterator[GenerationEvent]:
        remote = self._remote(run_generation)
        refs = {remote.remote(task, self.threads): task for task in tasks}
        for task, events, error in self._completed(refs, stop):
            if error is None:
                yield from events
            else:
                yield TaskEnd(task, error=f"{task.label}: generation failed after {self.max_retries + 1} attempts "
                                          f"({_describe(error)})")

    def score(self, store: Store, prepared: Sequence[PreparedScorer], plan: ScoringPlan, set_plan: SetPlan,
              device: torch.device, advance: Progress | None, stop: StopFlag | None = None) -> ScoringOutcome:
        outcome = ScoringOutcome()
        remote = self._remote(run_scoring)
        # Per-image scorers first, then set scorers: sets reuse the features the first pass stored.
        image_tasks = [pack(store, entries, part, None) for entries in scoring_groups(prepared, plan)
                       for part in split_plan(entries, plan, SCORE_SHARD_IMAGES)]
        set_tasks = [pack(store, [entry], None, set_plan) for entry in prepared if set_plan.todo.get(entry.name)]
        for payloads in (image_tasks, set_tasks):
            refs = {remote.remote(payload, self._requested, self.threads): payload for payload in payloads}
            for done, (payload, result, error) in enumerate(self._completed(refs, stop), start=1):
                if error is None:
                    part, writes = result
                    replay_writes(store, writes)
                    outcome.add(part)
                else:
                    _record_lost(outcome, payload, f"scoring task failed after {self.max_retries + 1} attempts "
                                                   f"({_describe(error)})")
                if advance:
                    advance("scoring tasks", done, len(payloads))
        return outcome

    def close(self) -> None:
        if self._started:
            self.ray.shutdown()
            self._started = False


def _describe(error: BaseException) -> str:
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[-1][:300] if text else ''}".rstrip(": ")


def _record_lost(outcome: ScoringOutcome, payload: ScoringPayload, message: str) -> None:
    """Every score a lost task should have computed is recorded as failed."""
    if payload.plan is not None:
        outcome.report.failures.extend((name, row.cell.image_key, message)
                                       for name, rows in payload.plan.todo.items() for row in rows)
    if payload.set_plan is not None:
        outcome.set_report.failures.extend((name, job.checkpoint, job.suite, message)
                                           for name, jobs in payload.set_plan.todo.items() for job in jobs)

