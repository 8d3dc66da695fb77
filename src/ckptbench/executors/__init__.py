"""Executors: where generation and scoring run (``local``: this process; ``ray``: a Ray cluster)."""

from __future__ import annotations

from ckptbench.executors.base import Executor, GenerationTask, GeneratorOptions, ImageOutcome, TaskEnd
from ckptbench.executors.local import LocalExecutor
from ckptbench.spec import BenchmarkSpec, ExecutorName

__all__ = ["Executor", "GenerationTask", "GeneratorOptions", "ImageOutcome", "LocalExecutor", "TaskEnd",
           "make_executor", "open_executor"]


def make_executor(name: str, address: str | None = None, max_retries: int = 2) -> Executor:
    if name == "ray":
        from ckptbench.executors.ray_executor import RayExecutor  # imports ray only now

        return RayExecutor(address, max_retries)
    return LocalExecutor()


def open_executor(spec: BenchmarkSpec, name: ExecutorName | None = None, address: str | None = None) -> Executor:
    """The spec's executor; ``name`` and ``address`` override its ``[benchmark]`` keys."""
    info = spec.benchmark
    return make_executor(name or info.executor, address or info.ray_address, info.ray_max_retries)
