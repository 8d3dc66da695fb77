"""The hires fix on Flux.1 / SD3.5, against Forge's procedure restated here.

Reference: Forge ``KDiffusionSampler.sample_img2img`` with A1111's ``setup_img2img_steps`` (a schedule of
``int(steps / min(denoise, 0.999))`` steps, ``t_enc = steps − 1``, ``sigma_sched = sigmas[steps − t_enc − 1:]``) and
the flow models' ``noise_scaling`` (ComfyUI/Forge ``CONST``: ``σ·noise + (1 − σ)·latent``), then the Euler steps of
the first pass on ``sigma_sched``; A1111's hires fix draws the second pass's noise from the same seeds and
upscales "Latent" by bilinear interpolation of the latents.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

from ckptbench.generate.base import FailedImage, HiresSettings, ImageJob, SamplingSettings
from ckptbench.generate.decode import decode_latents, to_pil
from ckptbench.generate.diffusers_backend import DiffusersGenerator, backend_id
from ckptbench.generate.flow_conditioning import encode_flow_prompts
from ckptbench.generate.flow_sampling import flow_sigmas, flux_flow
from ckptbench.generate.loading import load_pipeline
from ckptbench.models.checkpoint import resolve_checkpoint
from ckptbench.spec import CheckpointSpec
from ckptbench.suites import Case

CPU = torch.device("cpu")


def forge_hires_reference(pipeline, prompt: str, seed: int, steps: int, hires_steps: int, denoise: float,
                          guidance: float) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Forge's two passes written out: txt2img from σ = 1, bilinear latent upscale ×2, img2img."""
    (cond,) = encode_flow_prompts(pipeline, "flux", [prompt])
    sequence, pooled = cond.sequence[None], cond.pooled[None]

    def euler(x: torch.Tensor, sigmas: list[float]) -> torch.Tensor:
        for sigma, sigma_next in itertools.pairwise(sigmas):
            x = x + (sigma_next - sigma) * flux_flow(pipeline.transformer, x, sigma, sequence, pooled, guidance)
        return x

    channels = pipeline.vae.config.latent_channels
    side = 64 // 2 ** (len(pipeline.vae.config.block_out_channels) - 1)  # 64 px through the tiny VAE
    first_noise = torch.randn((1, channels, side, side), generator=torch.Generator("cpu").manual_seed(seed))
    first = euler(first_noise, flow_sigmas("flux", "dev", steps))
    upscaled = F.interpolate(first, size=(2 * side, 2 * side), mode="bilinear", antialias=False)
    total = int(hires_steps / min(denoise, 0.999))  # setup_img2img_steps
    t_enc = hires_steps - 1
    sigma_sched = flow_sigmas("flux", "dev", total)[total - t_enc - 1:]
    noise = torch.randn((1, channels, 2 * side, 2 * side), generator=torch.Generator("cpu").manual_seed(seed))
    xi = sigma_sched[0] * noise + (1.0 - sigma_sched[0]) * upscaled  # noise_scaling of a CONST (flow) model
    return euler(xi, sigma_sched)


def test_flux_hires_fix_is_forges_img2img_second_pass(flow_models) -> None:  # type: ignore[no-untyped-def]
    fields = {"path": flow_models["flux_full"], "config": flow_models["flux_config"],
              "t5_tokenizer": flow_models["tokenizer"]}
    resolved = resolve_checkpoint(CheckpointSpec(name="flux", **fields))
    hires = HiresSettings(scale=2.0, denoise=0.6, steps=3, upscaler="latent", upscaler_sha256=None)
    settings = SamplingSettings(sampler="Euler", schedule="Simple", steps=2, cfg=1.0, width=64, height=64,
                                dtype="fp32", distilled_cfg=3.5, hires=hires)
    case = Case(suite="s", case_id="0", prompt="a red cube on a table")
    job = ImageJob(checkpoint="flux", checkpoint_sha256=resolved.sha256, case=case, seed=7, prompt=case.prompt,
                   negative_prompt="", settings=settings, backend=backend_id(), checkpoint_identity=resolved.identity)
    (result,) = DiffusersGenerator(CPU, batch_size=1).generate(resolved, [job])
    assert not isinstance(result, FailedImage), getattr(result, "error", "")
    assert result.image.size == (128, 128)
    pipeline = load_pipeline(resolved, CPU, torch.float32)
    with torch.inference_mode():
        reference = forge_hires_reference(pipeline, case.prompt, 7, steps=2, hires_steps=3, denoise=0.6, guidance=3.5)
        expected = to_pil(decode_latents(pipeline, reference).pixels[0])
    ours, theirs = (np.asarray(image, dtype=np.int16) for image in (result.image, expected))
    assert np.abs(ours - theirs).max() <= 1  # the same arithmetic; at most last-bit rounding of the decode
    assert "Hires upscale: 2, Hires steps: 3" in result.infotext and "Denoising strength: 0.6" in result.infotext
    assert "Hires upscaler: Latent" in result.infotext
    # The second pass is really run: without it (denoise → the first pass, upscaled) the picture differs.
    without = DiffusersGenerator(CPU, batch_size=1).generate(
        resolved, [ImageJob(**{**job.__dict__, "settings": SamplingSettings(**{**settings.__dict__, "hires": None})})])
    assert next(iter(without)).image.size == (64, 64)


def test_a_hires_size_flux_cannot_patch_is_refused(flow_models) -> None:  # type: ignore[no-untyped-def]
    from ckptbench.models.families import get_family

    settings = SamplingSettings(sampler="Euler", steps=2, cfg=1.0, width=64, height=64, dtype="fp32",
                                hires=HiresSettings(scale=1.4, denoise=0.5, steps=0, upscaler="latent",
                                                    upscaler_sha256=None))
    job = ImageJob(checkpoint="flux", checkpoint_sha256="0" * 64, case=Case(suite="s", case_id="0", prompt="x"),
                   seed=1, prompt="x", negative_prompt="", settings=settings, backend=backend_id(),
                   checkpoint_identity={})
    assert "hires fix's size divisible by 16, not 88×88" in str(get_family("flux").job_problem(job))


def test_sd35_hires_with_a_pixel_upscaler_encodes_with_the_vae_shift(flow_models) -> None:  # type: ignore[no-untyped-def]
    from ckptbench.generate.hires import encode_images
    from tests.flow_models import sd35_split_fields

    resolved = resolve_checkpoint(CheckpointSpec(name="sd35", **sd35_split_fields(flow_models)))
    pipeline = load_pipeline(resolved, CPU, torch.float32)
    picture = to_pil(torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0)))
    with torch.inference_mode():
        ours = encode_images(pipeline, [picture])
        # diffusers' SD3 img2img: (mean latent − shift_factor) · scaling_factor.
        pixels = pipeline.image_processor.preprocess([picture])
        mean = pipeline.vae.encode(pixels).latent_dist.mean
        config = pipeline.vae.config
        assert config.shift_factor  # the tiny SD3.5 VAE shifts, as the real one (0.0609)
        torch.testing.assert_close(ours, (mean - config.shift_factor) * config.scaling_factor)
    hires = HiresSettings(scale=2.0, denoise=0.5, steps=2, upscaler="lanczos", upscaler_sha256=None)
    settings = SamplingSettings(sampler="Euler", schedule="Simple", steps=2, cfg=4.5, width=64, height=64,
                                dtype="fp32", hires=hires)
    job = ImageJob(checkpoint="sd35", checkpoint_sha256=resolved.sha256, case=Case(suite="s", case_id="0",
                   prompt="a blue sphere"), seed=3, prompt="a blue sphere", negative_prompt="blurry", settings=settings,
                   backend=backend_id(), checkpoint_identity=resolved.identity)
    (result,) = DiffusersGenerator(CPU, batch_size=1).generate(resolved, [job])
    assert not isinstance(result, FailedImage), getattr(result, "error", "")
    assert result.image.size == (128, 128) and "Hires upscaler: Lanczos" in result.infotext
