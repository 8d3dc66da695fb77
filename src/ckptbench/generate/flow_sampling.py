"""Flow-matching Euler for Flux.1 and SD3.5, as Forge and ComfyUI sample them ("Euler", "Simple" schedule).

The model predicts the flow v = noise − image at noise level σ ∈ [0, 1]; the sampler starts from pure noise
(σ = 1) and steps ``x ← x + (σ_next − σ) · v`` down to σ = 0 (ComfyUI's ``euler`` with a CONST model).
The schedule is Forge's and ComfyUI's "Simple": a table of σ(t) over N pseudo-timesteps t = 1/N … 1, read
at t_i = (N − ⌊i·N/steps⌋)/N for i = 0 … steps−1, then 0. σ(t) is the family's time shift:

* Flux: ``σ = e^μ / (e^μ + 1/t − 1)``, N = 10000, μ = 1.15 for [dev] (the value Forge and ComfyUI fix,
  that of a 1024² image) and μ = 1.0 for [schnell];
* SD3.5: ``σ = s·t / (1 + (s − 1)·t)`` with shift s = 3, N = 1000.

Guidance: Flux [dev] takes the "Distilled CFG Scale" through its guidance embedding and samples without
classifier-free guidance (CFG 1, one model call per step), as Forge's defaults; SD3.5 uses classifier-free
guidance with the negative prompt. Rows whose conditioning has the same length are run in one model call,
so an image never depends on the other prompts of its batch.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from ckptbench.generate.flow_conditioning import FlowConditioning
from ckptbench.models.families import get_family

if TYPE_CHECKING:
    from ckptbench.generate.hires import HiresFix


def simple_sigmas(steps: int, sigma_of: Any, table_size: int) -> list[float]:
    """Forge's and ComfyUI's "Simple" schedule over a table of ``table_size`` pseudo-timesteps, ending at 0."""
    stride = table_size / steps
    return [sigma_of((table_size - int(i * stride)) / table_size) for i in range(steps)] + [0.0]


def flow_sigmas(family: str, variant: str | None, steps: int) -> list[float]:
    """The family's "Simple" schedule (its time shift and table size come from the family module)."""
    flow = get_family(family)
    return simple_sigmas(steps, lambda t: flow.sigma(t, variant), flow.sigma_table)


def initial_noise(seeds: Sequence[int], shape: tuple[int, int, int]) -> torch.Tensor:
    """One CPU generator per image, as the SD families: the same seed gives the same noise in any batch."""
    return torch.cat([torch.randn((1, *shape), generator=torch.Generator("cpu").manual_seed(seed))
                      for seed in seeds])


def _grouped(conds: Sequence[FlowConditioning]) -> dict[int, list[int]]:
    groups: dict[int, list[int]] = {}
    for row, cond in enumerate(conds):
        groups.setdefault(cond.sequence.shape[0], []).append(row)
    return groups


@torch.no_grad()
def sample_flow(pipeline: Any, family: str, variant: str | None, conds: Sequence[FlowConditioning],
                uncond: Sequence[FlowConditioning] | None, seeds: Sequence[int], width: int, height: int, steps: int,
                cfg: float, guidance: float | None) -> torch.Tensor:
    """Latents (B, C, H/8, W/8) in the VAE's scaled space, sampled with flow-matching Euler."""
    channels = pipeline.vae.config.latent_channels
    scale = 2 ** (len(pipeline.vae.config.block_out_channels) - 1)
    x = initial_noise(seeds, (channels, height // scale, width // scale)).to(pipeline.transformer.device,
                                                                              torch.float32)
    return _euler(pipeline, family, x, flow_sigmas(family, variant, steps), conds, uncond, cfg, guidance)


@torch.no_grad()
def resample_flow(pipeline: Any, family: str, variant: str | None, conds: Sequence[FlowConditioning],
                  uncond: Sequence[FlowConditioning] | None, seeds: Sequence[int], latents: torch.Tensor, steps: int,
                  denoise: float, cfg: float, guidance: float | None) -> torch.Tensor:
    """The hires fix's second pass (img2img) as Forge runs it for these models: A1111's
    ``setup_img2img_steps`` (a schedule of ``int(steps / min(denoise, 0.999))`` steps, its last ``steps`` run),
    the start ``σ₀·noise + (1 − σ₀)·latents`` (the flow models' ``noise_scaling``), noise from the same seeds."""
    total, t_enc = int(steps / min(denoise, 0.999)), steps - 1
    schedule = flow_sigmas(family, variant, total)[total - t_enc - 1:]
    noise = initial_noise(seeds, tuple(latents.shape[1:])).to(latents.device, torch.float32)  # type: ignore[arg-type]
    x = schedule[0] * noise + (1.0 - schedule[0]) * latents.float()
    return _euler(pipeline, family, x, schedule, conds, uncond, cfg, guidance)


def _euler(pipeline: Any, family: str, x: torch.Tensor, sigmas: Sequence[float], conds: Sequence[FlowConditioning],
           uncond: Sequence[FlowConditioning] | None, cfg: float, guidance: float | None) -> torch.Tensor:
    transformer = pipeline.transformer
    # The run dtype: an fp8-stored transformer computes in it layer by layer (layerwise casting).
    dtype = pipeline.text_encoder.dtype
    model = get_family(family).predict_flow
    for sigma, sigma_next in itertools.pairwise(sigmas):
        v = _velocity(model, transformer, x, sigma, conds, dtype, guidance)
        if uncond is not None and cfg != 1.0:
            v_uncond = _velocity(model, transformer, x, sigma, uncond, dtype, guidance)
            v = v_uncond + cfg * (v - v_uncond)
        x = x + (sigma_next - sigma) * v
    return x


def _velocity(model: Any, transformer: Any, x: torch.Tensor, sigma: float, conds: Sequence[FlowConditioning],
              dtype: torch.dtype, guidance: float | None) -> torch.Tensor:
    out = torch.empty_like(x)
    for rows in _grouped(conds).values():
        sequence = torch.stack([conds[r].sequence for r in rows]).to(x.device, dtype)
        pooled = torch.stack([conds[r].pooled for r in rows]).to(x.device, dtype)
        out[rows] = model(transformer, x[rows].to(dtype), sigma, sequence, pooled, guidance).float()
    return out


def flux_flow(transformer: Any, x: torch.Tensor, sigma: float, sequence: torch.Tensor, pooled: torch.Tensor,
               guidance: float | None) -> torch.Tensor:
    from diffusers import FluxPipeline

    batch, channels, h, w = x.shape
    packed = FluxPipeline._pack_latents(x, batch, channels, h, w)
    image_ids = FluxPipeline._prepare_latent_image_ids(batch, h // 2, w // 2, x.device, x.dtype)
    text_ids = torch.zeros(sequence.shape[1], 3, device=x.device, dtype=x.dtype)
    timestep = torch.full((batch,), sigma, device=x.device, dtype=x.dtype)
    guidance_tensor = torch.full((batch,), guidance, device=x.device, dtype=x.dtype) \
        if transformer.config.guidance_embeds else None
    flow = transformer(hidden_states=packed, timestep=timestep, guidance=guidance_tensor,
                       pooled_projections=pooled, encoder_hidden_states=sequence, txt_ids=text_ids,
                       img_ids=image_ids, return_dict=False)[0]
    # Unpack (B, h/2·w/2, C·4) back to (B, C, h, w).
    flow = flow.view(batch, h // 2, w // 2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return flow.reshape(batch, channels, h, w)


def mmdit_flow(transformer: Any, x: torch.Tensor, sigma: float, sequence: torch.Tensor, pooled: torch.Tensor,
              _guidance: float | None) -> torch.Tensor:
    timestep = torch.full((x.shape[0],), sigma * 1000, device=x.device, dtype=x.dtype)
    return transformer(hidden_states=x, timestep=timestep, encoder_hidden_states=sequence,
                       pooled_projections=pooled, return_dict=False)[0]


@dataclass(frozen=True)
class FlowOutput:
    latents: torch.Tensor
    failures: tuple[str | None, ...]  # images already broken before the second pass (pixel upscalers decode)
    warnings: tuple[str, ...] = ()


def flow_batch_latents(pipeline: Any, checkpoint: Any, jobs: Sequence[Any], hires: HiresFix | None = None
                       ) -> FlowOutput:
    """A batch of jobs that share their settings (``ImageJob``s of a flow checkpoint): the first pass, and with a
    hires fix (``hires``: the pipeline's upscaler) the upscale and the second pass with the same conditioning."""
    from ckptbench.generate.flow_conditioning import encode_flow_prompts
    from ckptbench.generate.hires import second_pass_schedule

    settings = jobs[0].settings  # the generator has failed every job its family refuses (``job_problem``)
    conds = encode_flow_prompts(pipeline, checkpoint.family, [job.prompt for job in jobs])
    uncond = None if settings.cfg == 1.0 else encode_flow_prompts(
        pipeline, checkpoint.family, [job.negative_prompt for job in jobs], negative=True)
    seeds = [job.seed for job in jobs]
    latents = sample_flow(pipeline, checkpoint.family, checkpoint.variant, conds, uncond, seeds, settings.width,
                          settings.height, settings.steps, settings.cfg, settings.distilled_cfg)
    if settings.hires is None or hires is None:
        return FlowOutput(latents, (None,) * len(jobs))
    upscaled = hires.upscale(latents, settings)
    steps = second_pass_schedule(settings.steps, settings.hires)[1]
    second = resample_flow(pipeline, checkpoint.family, checkpoint.variant, conds, uncond, seeds, upscaled.latents,
                           steps, settings.hires.denoise, settings.cfg, settings.distilled_cfg)
    return FlowOutput(second, upscaled.failures, upscaled.warnings)
