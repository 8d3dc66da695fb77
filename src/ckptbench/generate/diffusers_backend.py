"""The diffusers generator: one pipeline load per checkpoint, batched jobs, per-image CPU generators."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Sequence
from itertools import groupby

import diffusers
import numpy as np
import torch
from PIL import Image

from ckptbench import __version__
from ckptbench.device import torch_dtype
from ckptbench.generate.base import FailedImage, GeneratedImage, ImageJob
from ckptbench.generate.loading import load_pipeline
from ckptbench.generate.samplers import make_scheduler
from ckptbench.infotext import format_infotext
from ckptbench.models.checkpoint import ResolvedCheckpoint

# Bumped whenever ckptbench's own generation code changes the pixels it makes for the same inputs.
GENERATION_CODE_VERSION = 1


def backend_id() -> str:
    """Part of every image key: diffusers' minor version and our generation code version."""
    major, minor = diffusers.__version__.split(".")[:2]
    return f"diffusers-{major}.{minor}/gen{GENERATION_CODE_VERSION}"


class DiffusersGenerator:
    def __init__(self, device: torch.device, batch_size: int) -> None:
        self.device = device
        self.batch_size = batch_size
        self.backend = backend_id()

    def generate(self, checkpoint: ResolvedCheckpoint, jobs: Sequence[ImageJob]
                 ) -> Iterator[GeneratedImage | FailedImage]:
        if not jobs:
            return
        dtypes = {job.settings.dtype for job in jobs}
        if len(dtypes) != 1:
            raise ValueError("all jobs of one generate() call must share a dtype")
        pipeline = load_pipeline(checkpoint, self.device, torch_dtype(dtypes.pop()))
        base_scheduler_config = dict(pipeline.scheduler.config)
        try:
            ordered = sorted(jobs, key=lambda job: (repr(job.settings), job.negative_prompt))
            for (settings, _), group in groupby(ordered, key=lambda job: (job.settings, job.negative_prompt)):
                group_jobs = list(group)
                pipeline.scheduler = make_scheduler(settings.sampler, base_scheduler_config)
                for start in range(0, len(group_jobs), self.batch_size):
                    yield from self._batch(pipeline, checkpoint, group_jobs[start : start + self.batch_size])
        finally:
            del pipeline
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _batch(self, pipeline: diffusers.DiffusionPipeline, checkpoint: ResolvedCheckpoint,
               batch: list[ImageJob]) -> Iterator[GeneratedImage | FailedImage]:
        settings = batch[0].settings
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                output = pipeline(
                    prompt=[job.prompt for job in batch],
                    negative_prompt=[job.negative_prompt for job in batch],
                    num_inference_steps=settings.steps,
                    guidance_scale=settings.cfg,
                    width=settings.width,
                    height=settings.height,
                    # One CPU generator per image: the same seed gives the same noise on any device and
                    # in any batch.
                    generator=[torch.Generator("cpu").manual_seed(job.seed) for job in batch],
                    output_type="np",
                )
        except Exception as error:  # one failed batch must not sink the checkpoint
            message = f"generation failed: {type(error).__name__}: {str(error).splitlines()[0][:300]}"
            for job in batch:
                yield FailedImage(job, message)
            return
        seconds = (time.perf_counter() - started) / len(batch)
        for job, pixels in zip(batch, output.images, strict=True):
            if not np.isfinite(pixels).all():
                yield FailedImage(job, "the decoded image contains NaN values (often an fp16 VAE overflow)")
                continue
            image = Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8))
            yield GeneratedImage(job, image, infotext_for(job, checkpoint), seconds)


def infotext_for(job: ImageJob, checkpoint: ResolvedCheckpoint) -> str:
    settings = job.settings
    parameters = {
        "Steps": settings.steps,
        "Sampler": settings.sampler,
        "CFG scale": f"{settings.cfg:g}",
        "Seed": job.seed,
        "Size": f"{settings.width}x{settings.height}",
        "Model hash": checkpoint.sha256[:10],
        "Model": job.checkpoint,
        "Version": f"ckptbench {__version__} ({job.backend}, {settings.dtype})",
    }
    return format_infotext(job.prompt, job.negative_prompt, parameters)
