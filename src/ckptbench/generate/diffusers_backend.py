"""The diffusers generator: one pipeline load per checkpoint, batched jobs, per-image CPU noise.

Each batch: A1111's conditioning and sampling (``samplers.run``) to latents with the pipeline's UNet, the
hires fix when asked for, then our own VAE decode, which checks for broken images and retries them in
fp32. Jobs are grouped so that a batch shares its sampling settings, negative prompt and LoRA set.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator, Sequence
from itertools import groupby
from typing import Any

import diffusers
import torch

from ckptbench import __version__
from ckptbench.device import torch_dtype
from ckptbench.errors import CkptbenchError
from ckptbench.generate import hires as hires_fix
from ckptbench.generate.base import FailedImage, GeneratedImage, ImageJob
from ckptbench.generate.batching import BatchSize, backend_id, group_key, largest_size, plan_batches
from ckptbench.generate.conditioning import encode_prompts
from ckptbench.generate.decode import decode_latents, to_pil
from ckptbench.generate.embeddings import EmbeddingLibrary, TextualInversion
from ckptbench.generate.fast_path import apply_fast_path, choose_batch_size, vae_decode_dtype
from ckptbench.generate.flow_sampling import flow_batch_latents
from ckptbench.generate.loading import load_pipeline
from ckptbench.generate.lora import LoraApplier, LoraError, lora_short_hash
from ckptbench.generate.samplers import resolve_sampler
from ckptbench.generate.samplers import run as sampling
from ckptbench.generate.samplers.schedules import infotext_fields as schedule_infotext_fields
from ckptbench.infotext import format_hashes, format_infotext
from ckptbench.models.checkpoint import ResolvedCheckpoint
from ckptbench.models.families import get_family
from ckptbench.prompt import scheduled_prompts
from ckptbench.stop import StopFlag, stop_requested


class DiffusersGenerator:
    def __init__(self, device: torch.device, batch_size: BatchSize, *, allow_pickle_loras: bool = False,
                 embeddings: EmbeddingLibrary | None = None, compile_unet: bool = False) -> None:
        self.device = device
        self.batch_size = batch_size
        self.allow_pickle_loras = allow_pickle_loras
        self.backend = backend_id()
        self.embeddings = embeddings
        self.compile_unet = compile_unet
        # What the last generate() call chose and measured: fast path, batch size, load seconds (provenance).
        self.runtime: dict[str, Any] = {}

    def generate(self, checkpoint: ResolvedCheckpoint, jobs: Sequence[ImageJob], stop: StopFlag | None = None
                 ) -> Iterator[GeneratedImage | FailedImage]:
        """Images of ``jobs`` in ``plan_batches`` order; when ``stop`` is set, ends after the batch in progress."""
        family = get_family(checkpoint.family)
        failed = {job.key: problem for job in jobs
                  if (problem := self._input_problem(job) or family.job_problem(job))}
        yield from (FailedImage(job, failed[job.key]) for job in jobs if job.key in failed)
        jobs = [job for job in jobs if job.key not in failed]
        if not jobs:
            return
        dtypes = {job.settings.dtype for job in jobs}
        if len(dtypes) != 1:
            raise ValueError("all jobs of one generate() call must share a dtype")
        dtype = torch_dtype(dtypes.pop())
        started = time.perf_counter()
        pipeline = load_pipeline(checkpoint, self.device, dtype)
        self.runtime = apply_fast_path(pipeline, self.device, self.compile_unet)
        self.runtime["vae_decode"] = vae_decode_dtype(pipeline)
        batch_size = choose_batch_size(self.batch_size, self.device, checkpoint.family, *largest_size(jobs), dtype)
        self.runtime["batch_size"] = batch_size
        self.runtime["load_seconds"] = round(time.perf_counter() - started, 3)
        # Flux and SD3.5 sample through flow_sampling, not the A1111 sampler registry's UNet denoisers.
        flow = checkpoint.prediction == "flow"
        model = None if flow else sampling.SamplingModel.of(pipeline)
        loras = LoraApplier(pipeline, checkpoint.name, self.allow_pickle_loras)
        second_pass = hires_fix.HiresFix(pipeline, model)
        try:
            for (_, _, lora_set, _), batches in groupby(plan_batches(jobs, batch_size),
                                                        key=lambda batch: group_key(batch[0])):
                group_batches = list(batches)
                # --- LoRA: exactly this group's LoRAs act on the pipeline (none: all disabled) ---
                try:
                    lora_warnings = loras.activate(lora_set)
                except LoraError as error:
                    yield from (FailedImage(job, str(error)) for batch in group_batches for job in batch)
                    continue
                for batch in group_batches:
                    if stop_requested(stop):  # between batches only: a batch once started is finished
                        return
                    yield from self._batch(pipeline, model, second_pass, checkpoint, batch, lora_warnings)
        finally:
            loras.close()
            del pipeline, loras, second_pass
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def _batch(self, pipeline: diffusers.DiffusionPipeline, model: sampling.SamplingModel | None,
               second_pass: hires_fix.HiresFix, checkpoint: ResolvedCheckpoint, batch: list[ImageJob],
               warnings: tuple[str, ...]) -> Iterator[GeneratedImage | FailedImage]:
        settings = batch[0].settings
        started = time.perf_counter()
        first_pass_failures: tuple[str | None, ...] = (None,) * len(batch)
        try:
            resolved = resolve_sampler(settings.sampler, settings.schedule)
            # --- prompts → A1111-faithful conditioning (weights, chunks, clip skip, embeddings, editing); the
            # text encoder never sees <lora:…> tags, which act as LoRAs ---
            prompts, negatives = [job.prompt for job in batch], [job.negative_prompt for job in batch]
            seeds = [job.seed for job in batch]
            text_options = {"clip_skip": settings.clip_skip, "embeddings": self._textual_inversions(batch)}
            if checkpoint.prediction == "flow":  # Flux, SD3.5: their own conditioning and flow-matching Euler
                with torch.inference_mode():
                    flowed = flow_batch_latents(pipeline, checkpoint, batch, second_pass)
                    decoded = decode_latents(pipeline, flowed.latents)
                yield from self._finish(batch, decoded, flowed.failures, checkpoint, warnings + flowed.warnings,
                                        started)
                return
            assert model is not None  # set for every UNet family
            steps = resolved.prompt_steps(settings.steps)
            with torch.inference_mode():
                conditioning = encode_prompts(pipeline, prompts, negatives, steps=steps, **text_options)
                latents = sampling.txt2img(model, resolved, conditioning, steps=settings.steps, cfg=settings.cfg,
                                           seeds=seeds, width=settings.width, height=settings.height)
            # --- hires fix: upscale and img2img with the same modules and LoRAs; prompt editing counts on
            # into the second pass as in A1111 ---
            if settings.hires is not None:
                second_steps = resolved.prompt_steps(hires_fix.second_pass_schedule(settings.steps,
                                                                                     settings.hires)[1])
                with torch.inference_mode():
                    hires_conditioning = encode_prompts(pipeline, prompts, negatives, steps=steps,
                                                        hires_steps=second_steps, **text_options)
                    upscaled = second_pass.run(latents, settings, resolved, hires_conditioning, seeds)
                latents, first_pass_failures = upscaled.latents, upscaled.failures
                warnings = warnings + upscaled.warnings
            with torch.inference_mode():
                decoded = decode_latents(pipeline, latents)
        except Exception as error:  # one failed batch must not sink the checkpoint
            message = f"generation failed: {type(error).__name__}: {str(error).splitlines()[0][:300]}"
            for job in batch:
                yield FailedImage(job, message)
            return
        yield from self._finish(batch, decoded, first_pass_failures, checkpoint, warnings, started)

    def _finish(self, batch: list[ImageJob], decoded: Any, first_pass_failures: tuple[str | None, ...],
                checkpoint: ResolvedCheckpoint, warnings: tuple[str, ...], started: float
                ) -> Iterator[GeneratedImage | FailedImage]:
        seconds = (time.perf_counter() - started) / len(batch)
        if decoded.retry_warning:
            warnings = (*warnings, decoded.retry_warning)
        for index, job in enumerate(batch):
            failure = first_pass_failures[index] or decoded.failures[index]
            if failure:
                yield FailedImage(job, failure)
                continue
            yield GeneratedImage(job, to_pil(decoded.pixels[index]), infotext_for(job, checkpoint), seconds, warnings)

    def _input_problem(self, job: ImageJob) -> str | None:
        """Why a job's prompts or embeddings cannot be used (checked per job, so one bad case fails alone)."""
        try:
            steps = resolve_sampler(job.settings.sampler, job.settings.schedule).prompt_steps(job.settings.steps)
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
    # Flux and SD3.5 always sample with flow-matching Euler on the "Simple" schedule (flow_sampling).
    flow = checkpoint.prediction == "flow"
    resolved = resolve_sampler("Euler" if flow else settings.sampler, "Simple" if flow else settings.schedule)
    parameters = {
        "Steps": settings.steps,
        # A1111 ≥ 1.9 reads a sampler without a schedule type as its "Automatic" one: always name it. Flux and
        # SD3.5 sample with flow-matching Euler on the "Simple" schedule, which Forge writes so.
        "Sampler": resolved.name,
        "Schedule type": resolved.schedule_label,
        **schedule_infotext_fields(resolved.schedule_label),
        "CFG scale": f"{settings.cfg:g}",
        "Distilled CFG Scale": f"{settings.distilled_cfg:g}" if settings.distilled_cfg is not None else None,
        "Seed": job.seed,
        "Size": f"{settings.width}x{settings.height}",
        "Model hash": checkpoint.sha256[:10],
        "Model": job.checkpoint,
        "Clip skip": settings.clip_skip if settings.clip_skip > 1 else None,
        # A1111 says nothing for its default GPU noise; ckptbench draws every image's noise on the CPU.
        "RNG": "CPU",
        # As A1111 writes it when it samples with the rescaled schedule.
        "Noise Schedule": "Zero Terminal SNR" if checkpoint.zero_terminal_snr else None,
        **(hires_fix.infotext_fields(settings.steps, settings.hires) if settings.hires else {}),
        # A1111 writes each LoRA as named in the prompt, with the kohya addnet hash (``lora_short_hash``).
        "Lora hashes": format_hashes({lora.name: lora.short_hash or lora_short_hash(lora.path)
                                      for lora in job.loras}) or None,
        # A1111 records embeddings by the first 12 hex digits of their file's sha256.
        "TI hashes": format_hashes({name: sha256[:12] for name, sha256 in job.embeddings}) or None,
        "Version": f"ckptbench {__version__} ({job.backend}, {settings.dtype})",
    }
    return format_infotext(job.prompt, job.negative_prompt, parameters)
