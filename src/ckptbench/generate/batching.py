"""What generation will do, decided without loading diffusers or torch: the batches a checkpoint's jobs
are cut into and the generator's backend id (part of every image key). Planning, dry runs and executors
use these; only the generator itself imports diffusers."""

from __future__ import annotations

from collections.abc import Sequence
from importlib.metadata import version
from itertools import groupby
from typing import Literal

from ckptbench.generate.base import ImageJob

# Bumped whenever ckptbench's own generation code changes the pixels it makes for the same inputs.
# 2: A1111 prompt syntax, emphasis, long prompts, clip skip and textual inversion in the conditioning.
GENERATION_CODE_VERSION = 2

BatchSize = int | Literal["auto"]  # 'auto': chosen on the device once the pipeline is loaded (fast_path)


def backend_id() -> str:
    """Part of every image key: diffusers' minor version and our generation code version."""
    major, minor = version("diffusers").split(".")[:2]
    return f"diffusers-{major}.{minor}/gen{GENERATION_CODE_VERSION}"


def group_key(job: ImageJob) -> tuple:
    """Jobs of one batch share settings, negative prompt, LoRA set and embeddings."""
    return (job.settings, job.negative_prompt, job.loras, job.embeddings)


def _order_key(job: ImageJob) -> tuple:
    # Jobs without LoRAs first; a stable sort keeps the given order within a group.
    return (repr(job.settings), job.negative_prompt, job.loras, job.embeddings)


def plan_batches(jobs: Sequence[ImageJob], batch_size: int) -> list[list[ImageJob]]:
    """The batches ``generate`` makes of ``jobs``, in order. Whole batches from this list, given to
    ``generate`` again, are cut into the same batches: only the last batch of a group can be short."""
    batches: list[list[ImageJob]] = []
    for _, group in groupby(sorted(jobs, key=_order_key), key=group_key):
        group_jobs = list(group)
        batches.extend(group_jobs[start : start + batch_size] for start in range(0, len(group_jobs), batch_size))
    return batches


def largest_size(jobs: Sequence[ImageJob]) -> tuple[int, int]:
    """The largest (width, height) any job's batch reaches: the hires fix's upscaled size where it is on."""
    sizes = [(int(job.settings.width * (job.settings.hires.scale if job.settings.hires else 1)),
              int(job.settings.height * (job.settings.hires.scale if job.settings.hires else 1))) for job in jobs]
    return max(sizes, key=lambda size: size[0] * size[1])


def batches_with_missing(jobs: Sequence[ImageJob], existing: set[str], batch_size: int) -> list[ImageJob]:
    """The jobs of every planned batch that has an image not in ``existing``, whole.

    Batched kernels round differently for different batch contents (on the tiny CPU models one value in
    a thousand moves by 1/255), so an image made after an interruption must come from the same batch as
    in an uninterrupted run: a batch cut short by a kill is remade whole, and the runner keeps the copies
    it already had.
    """
    return [job for batch in plan_batches(jobs, batch_size) if any(job.key not in existing for job in batch)
            for job in batch]
