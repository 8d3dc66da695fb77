"""Every sampler name against A1111 v1.10 + k-diffusion on a tiny UNet, fp32: schedules exact, latents ≤ 1e-5.

The reference (``tests/a1111_reference.py``) runs k-diffusion's own sampler functions, denoisers, Brownian
trees and Karras/exponential schedules, inside A1111's procedure restated from its v1.10 sources (CFG
denoiser, per-image CPU RNG with its ``TorchHijack``, ``get_sigmas`` with its schedulers and the discarded
next-to-last sigma, Restart, LCM, DDIM/PLMS/UniPC on A1111's timestep grid). ckptbench runs its own code
(``ckptbench.generate.samplers``) through ``run.txt2img`` / ``run.img2img`` on the same UNet, conditioning
and seeds. The default run covers every sampler at 10 steps; the slow run adds 20 and 30 steps, the
hires-fix second pass and v-prediction.

Reproduce the numbers in docs/samplers.md: ``python -m pytest -q -m "" tests/test_sampler_parity.py -s``.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel

from ckptbench.errors import CkptbenchError
from ckptbench.generate.conditioning import Conditioning
from ckptbench.generate.samplers import SAMPLER_TABLE, SCHEDULES, resolve_sampler
from ckptbench.generate.samplers.denoisers import CompVisDenoiser, DiffusersUNet, LcmDenoiser, model_alphas_cumprod
from ckptbench.generate.samplers.run import SamplingModel, img2img, txt2img
from ckptbench.generate.samplers.schedules import sampler_sigmas
from tests import a1111_reference as a1111

CONFIG = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000}
SEEDS = [3, 1234567]
CFG = 6.5
SHAPE = (4, 8, 8)
NAMES = [info.name for info in SAMPLER_TABLE]
TOLERANCE = 1e-5


def make_unet() -> torch.nn.Module:
    """A UNet of the real diffusers class, small enough for hundreds of calls a second."""
    torch.manual_seed(7)
    model = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16, attention_head_dim=2, norm_num_groups=4,
    ).eval()
    with torch.no_grad():  # random init leaves the output convolution at zero: give the UNet a real output
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return model


def make_texts() -> tuple[torch.Tensor, torch.Tensor]:
    """Text conditioning of two images: (cond, uncond), each (2, 77, 16)."""
    generator = torch.Generator().manual_seed(11)
    return torch.randn(2, 77, 16, generator=generator), torch.randn(2, 77, 16, generator=generator)


@pytest.fixture(scope="module")
def unet() -> torch.nn.Module:
    return make_unet()


@pytest.fixture(scope="module")
def texts() -> tuple[torch.Tensor, torch.Tensor]:
    return make_texts()


def sampling_model(unet: torch.nn.Module, prediction: str = "epsilon") -> SamplingModel:
    return SamplingModel(unet=unet, alphas_cumprod=model_alphas_cumprod(CONFIG).float(), prediction=prediction,
                         sdxl=False, latent_channels=4, scale_factor=8)


def conditioning(texts: tuple[torch.Tensor, torch.Tensor]) -> Conditioning:
    """Fixed prompts: rows [cond 0, cond 1, uncond 0, uncond 1], as A1111's CFG batch."""
    hidden = torch.cat(texts)
    return Conditioning(hidden, torch.ones(hidden.shape[:2], dtype=torch.bool), None,
                        [[(10_000, row)] for row in range(4)], batch=2, embeddings_used=())


def relative_difference(ours: torch.Tensor, reference: torch.Tensor) -> float:
    assert torch.isfinite(reference).all() and reference.abs().max() > 0.1
    return float((ours - reference).abs().max() / reference.abs().max())


def reference_txt2img(unet, name: str, schedule: str, steps: int, texts, prediction: str = "epsilon"):
    model = a1111.LdmModel(unet, a1111.ldm_alphas_cumprod(), prediction)
    if name in a1111.TIMESTEP_SAMPLERS:
        return a1111.timesteps_txt2img(name, model, steps, SEEDS, SHAPE, *texts, CFG)
    return a1111.kdiffusion_txt2img(name, schedule, model, steps, SEEDS, SHAPE, *texts, CFG)


def ours_txt2img(unet, name: str, schedule: str | None, steps: int, texts, prediction: str = "epsilon"):
    resolved = resolve_sampler(name, schedule)
    with torch.inference_mode():
        return txt2img(sampling_model(unet, prediction), resolved, conditioning(texts), steps=steps, cfg=CFG,
                       seeds=SEEDS, width=64, height=64)


def test_the_model_schedule_is_ldms() -> None:
    torch.testing.assert_close(model_alphas_cumprod(CONFIG).float(), a1111.ldm_alphas_cumprod(), rtol=0, atol=0)


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("steps", [3, 10, 11, 20, 30])
def test_every_schedule_is_a1111s_exactly(unet, schedule: str, steps: int) -> None:
    for name in ("Euler", "DPM2", "LCM"):  # plain, with the discarded next-to-last sigma, LCM's own table
        resolved = resolve_sampler(name, schedule)
        model = a1111.LdmModel(unet, a1111.ldm_alphas_cumprod())
        wrap = a1111.model_wrap(model, name)
        ours_model = (LcmDenoiser if name == "LCM" else CompVisDenoiser)(
            DiffusersUNet(unet), model_alphas_cumprod(CONFIG).float(), "epsilon")
        ours = sampler_sigmas(resolved, steps, ours_model, sdxl=False)
        reference = a1111.get_sigmas(name, schedule, steps, wrap).float()
        torch.testing.assert_close(ours, reference, rtol=0, atol=0, msg=f"{name} {schedule} {steps}")


@pytest.mark.parametrize("name", NAMES)
def test_automatic_schedule_is_a1111s(unet, name: str) -> None:
    """A sampler without a schedule type runs A1111 1.10's "Automatic" one (DPM++ 2M: Karras, …)."""
    resolved = resolve_sampler(name)
    if name in a1111.TIMESTEP_SAMPLERS:
        assert resolved.schedule is None
        return
    model = a1111.LdmModel(unet, a1111.ldm_alphas_cumprod())
    ours_model = (LcmDenoiser if name == "LCM" else CompVisDenoiser)(
        DiffusersUNet(unet), model_alphas_cumprod(CONFIG).float(), "epsilon")
    reference = a1111.get_sigmas(name, "Automatic", 12, a1111.model_wrap(model, name))
    torch.testing.assert_close(sampler_sigmas(resolved, 12, ours_model, sdxl=False), reference, rtol=0, atol=0)


def _check(unet, name: str, steps: int, texts, prediction: str = "epsilon") -> float:
    ours = ours_txt2img(unet, name, None, steps, texts, prediction)
    reference = reference_txt2img(unet, name, "Automatic", steps, texts, prediction)
    difference = relative_difference(ours, reference)
    print(f"\nparity {name} ({prediction}) {steps} steps: max relative difference {difference:.2e}")
    assert difference <= TOLERANCE, f"{name} at {steps} steps: {difference:.2e}"
    return difference


@pytest.mark.parametrize("name", NAMES)
def test_final_latents_match_a1111_at_10_steps(unet, texts, name: str) -> None:
    _check(unet, name, 10, texts)


@pytest.mark.slow
@pytest.mark.parametrize("steps", [20, 30])
@pytest.mark.parametrize("name", NAMES)
def test_final_latents_match_a1111_at_20_and_30_steps(unet, texts, name: str, steps: int) -> None:
    _check(unet, name, steps, texts)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Euler a", "DPM++ 2M", "DPM++ SDE", "DPM2 a", "DDIM", "UniPC"])
def test_v_prediction_matches_a1111(unet, texts, name: str) -> None:
    _check(unet, name, 10, texts, prediction="v_prediction")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["Euler a", "DPM++ 2M", "DPM++ 2M SDE", "LMS", "DDIM", "PLMS", "UniPC"])
def test_hires_second_pass_matches_a1111(unet, texts, name: str) -> None:
    start = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(5)) * 3
    resolved = resolve_sampler(name)
    with torch.inference_mode():
        ours = img2img(sampling_model(unet), resolved, conditioning(texts), start, steps=5, denoise=0.55, cfg=CFG,
                       seeds=SEEDS)
    model = a1111.LdmModel(unet, a1111.ldm_alphas_cumprod())
    if name in a1111.TIMESTEP_SAMPLERS:
        reference = a1111.timesteps_img2img(name, model, start, 5, 0.55, SEEDS, *texts, CFG)
    else:
        reference = a1111.kdiffusion_img2img(name, "Automatic", model, start, 5, 0.55, SEEDS, *texts, CFG)
    difference = relative_difference(ours, reference)
    print(f"\nparity hires {name}: max relative difference {difference:.2e}")
    assert difference <= TOLERANCE


def test_lcm_refuses_v_prediction_models(unet, texts) -> None:
    with pytest.raises(CkptbenchError, match="'LCM' does not run on v-prediction models"):
        ours_txt2img(unet, "LCM", None, 4, texts, prediction="v_prediction")


def test_explicit_schedules_run_as_a1111(unet, texts) -> None:
    ours = ours_txt2img(unet, "DPM++ 2M", "Uniform", 10, texts)
    reference = reference_txt2img(unet, "DPM++ 2M", "Uniform", 10, texts)
    assert relative_difference(ours, reference) <= TOLERANCE
    karras = ours_txt2img(unet, "DPM++ 2M", None, 10, texts)
    assert (karras - ours).abs().max() > 1e-3  # Automatic (Karras) is another schedule than Uniform


def test_the_tolerance_tells_rounded_timesteps_apart(unet, texts, monkeypatch) -> None:
    """The comparison can fail: A1111 with integer timesteps (its enable_quantization option, diffusers'
    habit) is farther from ckptbench than the tolerance."""
    original = a1111.model_wrap

    def quantized(model, sampler):
        wrap = original(model, sampler)
        wrap.quantize = True
        return wrap

    monkeypatch.setattr(a1111, "model_wrap", quantized)
    reference = reference_txt2img(unet, "DPM++ 2M", "Automatic", 10, texts)
    assert relative_difference(ours_txt2img(unet, "DPM++ 2M", None, 10, texts), reference) > 100 * TOLERANCE
