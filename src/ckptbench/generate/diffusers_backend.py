"""The diffusers generator: one pipeline load per checkpoint, batched jobs, per-image CPU generators.

Each batch: text-to-image to latents, the hires fix when asked for, then our own VAE decode, which checks
for broken images and retries them in fp32. Jobs are grouped so that a batch shares its sampling
settings, negative prompt and LoRA set.
"""

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
from ckptbench.generate import hires as hires_fix
from ckptbench.generate.base import FailedImage, GeneratedImage, ImageJob
from ckptbench.generate.decode import decode_latents
from ckptbench.generate.loading import load_pipeline
from ckptbench.generate.lora import LoraApplier, LoraError
from ckptbench.generate.samplers import make_scheduler
from ckptbench.infotext import format_infotext
from ckptbench.models.checkpoint import ResolvedCheckpoint
from ckptbench.prompt import extract_lora_tags

# Bumped whenever ckptbench's own generation code changes the pixels it makes for the same inputs.
GENERATION_CODE_VERSION = 1


def backend_id() -> str:
    """Part of every image key: diffusers' minor version and our generation code version."""
    major, minor = diffusers.__version__.split(".")[:2]
    return f"diffusers-{major}.{minor}/gen{GENERATION_CODE_VERSION}"


class DiffusersGenerator:
    def __init__(self, device: torch.device, batch_size: int, allow_pickle_loras: bool = False) -> None:
        self.device = device
        self.batch_size = batch_size
        self.allow_pickle_loras = allow_pickle_loras
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
        loras = LoraApplier(pipeline, checkpoint.name, self.allow_pickle_loras)
        second_pass = hires_fix.HiresFix(pipeline)
        try:
            # Jobs without LoRAs first; a batch shares settings, negative prompt and LoRA set.
            ordered = sorted(jobs, key=lambda job: (repr(job.settings), job.negative_prompt, job.loras))
            grouping = groupby(ordered, key=lambda job: (job.settings, job.negative_prompt, job.loras))
            for (settings, _, lora_set), group in grouping:
                group_jobs = list(group)
                pipeline.scheduler = make_scheduler(settings.sampler, base_scheduler_config)
                # --- LoRA: exactly this group's LoRAs act on the pipeline (none: all disabled) ---
                try:
                    lora_warnings = loras.activate(lora_set)
                except LoraError as error:
                    yield from (FailedImage(job, str(error)) for job in group_jobs)
                    continue
                for start in range(0, len(group_jobs), self.batch_size):
                    batch = group_jobs[start : start + self.batch_size]
                    yield from self._batch(pipeline, second_pass, checkpoint, batch, lora_warnings)
        finally:
            loras.close()
            del pipeline, loras, second_pass
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _batch(self, pipeline: diffusers.DiffusionPipeline, second_pass: hires_fix.HiresFix,
               checkpoint: ResolvedCheckpoint, batch: list[ImageJob], warnings: tuple[str, ...]
               ) -> Iterator[GeneratedImage | FailedImage]:
        settings = batch[0].settings
        started = time.perf_counter()
        first_pass_failures: tuple[str | None, ...] = (None,) * len(batch)
        try:
            with torch.inference_mode():
                text_inputs = _text_inputs(batch)
                latents = pipeline(
                    **text_inputs,
                    num_inference_steps=settings.steps,
                    guidance_scale=settings.cfg,
                    width=settings.width,
                    height=settings.height,
                    # One CPU generator per image: the same seed gives the same noise on any device and
                    # in any batch.
                    generator=[torch.Generator("cpu").manual_seed(job.seed) for job in batch],
                    output_type="latent",
                ).images
                # --- hires fix: upscale and img2img with the same modules, LoRAs and conditioning ---
                if settings.hires is not None:
                    upscaled = second_pass.run(latents, settings, text_inputs, [job.seed for job in batch])
                    latents, first_pass_failures = upscaled.latents, upscaled.failures
                    warnings = warnings + upscaled.warnings
                decoded = decode_latents(pipeline, latents)
        except Exception as error:  # one failed batch must not sink the checkpoint
            message = f"generation failed: {type(error).__name__}: {str(error).splitlines()[0][:300]}"
            for job in batch:
                yield FailedImage(job, message)
            return
        seconds = (time.perf_counter() - started) / len(batch)
        if decoded.retry_warning:
            warnings = (*warnings, decoded.retry_warning)
        for index, job in enumerate(batch):
            failure = first_pass_failures[index] or decoded.failures[index]
            if failure:
                yield FailedImage(job, failure)
                continue
            pixels = decoded.pixels[index].permute(1, 2, 0).numpy()
            image = Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8))
            yield GeneratedImage(job, image, infotext_for(job, checkpoint), seconds, warnings)


def _text_inputs(batch: list[ImageJob]) -> dict[str, list[str]]:
    """What the text encoder sees: the prompts without their ``<lora:…>`` tags, which are applied as LoRAs."""
    return {"prompt": [extract_lora_tags(job.prompt)[0] for job in batch],
            "negative_prompt": [job.negative_prompt for job in batch]}


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
        **(hires_fix.infotext_fields(settings.steps, settings.hires) if settings.hires else {}),
        # A1111's short LoRA hash is the first 12 hex digits of the file's sha256.
        "Lora hashes": ", ".join(f"{lora.name}: {lora.sha256[:12]}" for lora in job.loras) or None,
        "Version": f"ckptbench {__version__} ({job.backend}, {settings.dtype})",
    }
    return format_infotext(job.prompt, job.negative_prompt, parameters)
