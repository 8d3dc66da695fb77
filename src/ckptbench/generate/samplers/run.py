"""Sampling with a loaded diffusers pipeline, as A1111's ``KDiffusionSampler`` / ``CompVisSampler`` do it.

Text to image: the starting noise is each image's first draw (``noise.ImageNoise``); a sigma sampler scales
it by the schedule's first sigma and integrates the schedule; a timestep sampler starts from it as it is.
Image to image (the hires fix's second pass, ``setup_img2img_steps``): a schedule of
``int(steps / min(denoise, 0.999))`` steps of which the last ``steps`` run, starting from the given latents
plus fresh noise from the same seeds at the first of them.

Only the pipeline's modules are used (UNet, and the scheduler config for the training noise schedule and
the prediction type); the pipeline's own denoising loop and scheduler are not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ckptbench.errors import CkptbenchError
from ckptbench.generate.conditioning import Conditioning
from ckptbench.generate.samplers.denoisers import (
    CompVisDenoiser,
    DiffusersUNet,
    GuidedDenoiser,
    LcmDenoiser,
    TimestepDenoiser,
    model_alphas_cumprod,
)
from ckptbench.generate.samplers.noise import BrownianNoise, ImageNoise
from ckptbench.generate.samplers.registry import ResolvedSampler
from ckptbench.generate.samplers.schedules import sampler_sigmas
from ckptbench.generate.samplers.timesteps import noised_to, timestep_grid


@dataclass(frozen=True)
class SamplingModel:
    """What sampling needs from a loaded pipeline."""

    unet: torch.nn.Module
    alphas_cumprod: torch.Tensor  # float32, on the UNet's device
    prediction: str  # "epsilon" or "v_prediction"
    sdxl: bool
    latent_channels: int
    scale_factor: int  # pixels per latent pixel

    @classmethod
    def of(cls, pipeline: Any) -> SamplingModel:
        config = dict(pipeline.scheduler.config)
        device = pipeline.unet.device
        return cls(unet=pipeline.unet, alphas_cumprod=model_alphas_cumprod(config).float().to(device),
                   prediction=config.get("prediction_type", "epsilon"),
                   sdxl=getattr(pipeline, "text_encoder_2", None) is not None,
                   latent_channels=pipeline.unet.config.in_channels, scale_factor=pipeline.vae_scale_factor)

    @property
    def device(self) -> torch.device:
        return self.alphas_cumprod.device


def txt2img(model: SamplingModel, resolved: ResolvedSampler, conditioning: Conditioning, *, steps: int, cfg: float,
            seeds: Sequence[int], width: int, height: int) -> torch.Tensor:
    """Latents (batch, C, H/8, W/8) in float32."""
    shape = (model.latent_channels, height // model.scale_factor, width // model.scale_factor)
    noise = ImageNoise(seeds, shape, model.device)
    start = noise.next()
    guided = _guided(model, resolved, conditioning, cfg, (height, width))
    info = resolved.sampler
    if info.grid == "timesteps":
        return info.load()(guided, start, timestep_grid(steps, model.device), model.alphas_cumprod)
    sigmas = sampler_sigmas(resolved, steps, guided.inner, model.sdxl)
    noise_sampler = BrownianNoise(seeds, shape, sigmas, model.device) if info.brownian else noise.sampler()
    return info.load()(guided, start * sigmas[0], sigmas, noise_sampler, **dict(info.options))


def img2img(model: SamplingModel, resolved: ResolvedSampler, conditioning: Conditioning, latents: torch.Tensor, *,
            steps: int, denoise: float, cfg: float, seeds: Sequence[int]) -> torch.Tensor:
    """``steps`` steps of a ``int(steps / min(denoise, 0.999))``-step schedule from ``latents``."""
    total, first = img2img_steps(steps, denoise)
    latents = latents.float()
    shape = tuple(latents.shape[1:])
    noise = ImageNoise(seeds, shape, model.device)
    fresh = noise.next()
    height, width = (side * model.scale_factor for side in shape[1:])
    guided = _guided(model, resolved, conditioning, cfg, (height, width))
    info = resolved.sampler
    if info.grid == "timesteps":
        grid = timestep_grid(total, model.device)
        start = noised_to(latents, fresh, model.alphas_cumprod, grid[first])
        return info.load()(guided, start, grid[:first], model.alphas_cumprod, img2img=True)
    sigmas = sampler_sigmas(resolved, total, guided.inner, model.sdxl)
    schedule = sigmas[total - first - 1 :]
    noise_sampler = BrownianNoise(seeds, shape, sigmas, model.device) if info.brownian else noise.sampler()
    return info.load()(guided, latents + fresh * schedule[0], schedule, noise_sampler, **dict(info.options))


def img2img_steps(steps: int, denoise: float) -> tuple[int, int]:
    """A1111's ``setup_img2img_steps`` with the steps given: (schedule length, ``t_enc`` = steps − 1)."""
    return int(steps / min(denoise, 0.999)), steps - 1


def _guided(model: SamplingModel, resolved: ResolvedSampler, conditioning: Conditioning, cfg: float,
            size: tuple[int, int]) -> GuidedDenoiser:
    prediction = {"v_prediction": "v"}.get(model.prediction, model.prediction)
    if prediction not in resolved.sampler.predictions:
        raise CkptbenchError(f"sampler '{resolved.name}' does not run on {prediction}-prediction models (nor does it "
                             f"in A1111); choose another sampler for this checkpoint.")
    unet = DiffusersUNet(model.unet)
    if resolved.sampler.grid == "timesteps":
        inner: Any = TimestepDenoiser(unet, model.alphas_cumprod, model.prediction)
    else:
        denoiser = LcmDenoiser if resolved.sampler.denoiser == "lcm" else CompVisDenoiser
        inner = denoiser(unet, model.alphas_cumprod, model.prediction)
    # SDXL's size conditioning, as A1111 gives it: original size = target size = this pass's, no crop.
    time_ids = torch.tensor([[*size, 0, 0, *size]], dtype=torch.float32, device=model.device)

    def inputs_at(call: int) -> dict[str, Any]:
        inputs: dict[str, Any] = dict(conditioning.guided_inputs(call))
        if "text_embeds" in inputs:
            pooled = inputs.pop("text_embeds")
            inputs["added_cond_kwargs"] = {"text_embeds": pooled, "time_ids": time_ids.repeat(len(pooled), 1)}
        return inputs

    return GuidedDenoiser(inner, inputs_at, cfg)

