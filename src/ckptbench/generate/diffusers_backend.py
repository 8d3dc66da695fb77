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
from ckptbench.errors import CkptbenchError
from ckptbench.generate.base import FailedImage, GeneratedImage, ImageJob
from ckptbench.generate.conditioning import prompt_conditioning
from ckptbench.generate.embeddings import EmbeddingLibrary, TextualInversion
from ckptbench.generate.loading import load_pipeline
from ckptbench.generate.samplers import make_scheduler, schedule_steps
from ckptbench.infotext import format_hashes, format_infotext
from ckptbench.models.checkpoint import ResolvedCheckpoint
from ckptbench.prompt import scheduled_prompts

# Bumped whenever ckptbench's own generation code changes the pixels it makes for the same inputs.
# 2: A1111 prompt syntax, emphasis, long prompts, clip skip and textual inversion in the conditioning.
GENERATION_CODE_VERSION = 2


def backend_id() -> str:
    """Part of every image key: diffusers' minor version and our generation code version."""
    major, minor = diffusers.__version__.split(".")[:2]
    return f"diffusers-{major}.{minor}/gen{GENERATION_CODE_VERSION}"


class DiffusersGenerator:
    def __init__(self, device: torch.device, batch_size: int, embeddings: EmbeddingLibrary | None = None) -> None:
        self.device = device
        self.batch_size = batch_size
        self.backend = backend_id()
        self.embeddings = embeddings

    def generate(self, checkpoint: ResolvedCheckpoint, jobs: Sequence[ImageJob]
                 ) -> Iterator[GeneratedImage | FailedImage]:
        failed = {job.key: problem for job in jobs if (problem := self._input_problem(job))}
        yield from (FailedImage(job, failed[job.key]) for job in jobs if job.key in failed)
        jobs = [job for job in jobs if job.key not in failed]
        if not jobs:
            return
        dtypes = {job.settings.dtype for job in jobs}
        if len(dtypes) != 1:
            raise ValueError("all jobs of one generate() call must share a dtype")
        pipeline = load_pipeline(checkpoint, self.device, torch_dtype(dtypes.pop()))
        base_scheduler_config = dict(pipeline.scheduler.config)
        try:
            # A batch shares settings, negative prompt and embeddings (each job's embeddings are its own).
            ordered = sorted(jobs, key=lambda job: (repr(job.settings), job.negative_prompt, job.embeddings))
            for (settings, *_), group in groupby(
                    ordered, key=lambda job: (job.settings, job.negative_prompt, job.embeddings)):
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
            # --- prompts → A1111-faithful embeds (weights, chunks, clip skip, embeddings) ---
            conditioning = prompt_conditioning(
                pipeline, [job.prompt for job in batch], [job.negative_prompt for job in batch],
                steps=schedule_steps(settings.sampler, settings.steps), clip_skip=settings.clip_skip,
                embeddings=self._textual_inversions(batch))
            with conditioning as embeds, torch.inference_mode():
                output = pipeline(
                    **embeds,
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

    def _input_problem(self, job: ImageJob) -> str | None:
        """Why a job's prompts or embeddings cannot be used (checked per job, so one bad case fails alone)."""
        steps = schedule_steps(job.settings.sampler, job.settings.steps)
        try:
            scheduled_prompts(job.prompt, steps)
            scheduled_prompts(job.negative_prompt, steps, negative=True)
            self._textual_inversions([job])
        except CkptbenchError as error:
            return str(error)
        return None

    def _textual_inversions(self, batch: Sequence[ImageJob]) -> dict[str, TextualInversion]:
        names = {name for job in batch for name, _ in job.embeddings}
        if names and self.embeddings is None:
            raise CkptbenchError(f"jobs name embeddings ({', '.join(sorted(names))}) but no embedding_dirs are set")
        return {name: self.embeddings.load(name) for name in sorted(names)} if self.embeddings else {}


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
        "Clip skip": settings.clip_skip if settings.clip_skip > 1 else None,
        # A1111 records embeddings by the first 12 hex digits of their file's sha256.
        "TI hashes": format_hashes({name: sha256[:12] for name, sha256 in job.embeddings}) or None,
        "Version": f"ckptbench {__version__} ({job.backend}, {settings.dtype})",
    }
    return format_infotext(job.prompt, job.negative_prompt, parameters)
