"""Executors: where generation and scoring run (``local``: this process; ``ray``: a Ray cluster)."""

from __future__ import annotations

from ckptbench.executors.base import Executor, GenerationTask, GeneratorOptions, ImageOutcome, TaskEnd
from ckptbench.executors.local import LocalExecutor

__all__ = ["Executor", "GenerationTask", "GeneratorOptions", "ImageOutcome", "LocalExecutor", "TaskEnd",
           "make_executor"]


def make_executor(name: str, address: str | None = None, max_retries: int = 2) -> Executor:
    if name == "ray":
        from ckptbench.executors.ray_executor import RayExecutor  # imports ray only now

        return RayExecutor(address, max_retries)
    return LocalExecutor()
