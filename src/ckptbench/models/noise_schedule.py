"""The discrete noise schedule of the UNet families, and its zero-terminal-SNR rescale.

Zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are Flawed",
Algorithm 1) shifts and scales √ᾱ so that the last training step holds pure noise (ᾱ_T = 0) while the
first keeps its value. A model trained that way (NoobAI-XL v-pred and other ``ztsnr`` files) must be
sampled with the same schedule. A1111 (``rescale_zero_terminal_snr_abar``), Forge and ComfyUI
(``ModelSamplingDiscrete`` with ``zsnr``) then replace the final ᾱ of exactly 0, whose σ would be
infinite, by 4.8973451890853435e-08 (σ_max ≈ 4518.8); diffusers' own option uses 2⁻²⁴ instead, so
ckptbench installs the rescaled schedule itself, as ``trained_betas`` that every diffusers scheduler
accepts and every sampler built from the scheduler's config keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

# What A1111, Forge and ComfyUI put in place of the rescaled schedule's final ᾱ = 0.
ZTSNR_FINAL_ALPHA_BAR = 4.8973451890853435e-08


def alphas_cumprod_of(settings: Mapping[str, Any]) -> torch.Tensor | None:
    """ᾱ_t (float64) of a scheduler config's scaled-linear or linear schedule; None for other schedules."""
    steps = int(settings.get("num_train_timesteps", 1000))
    start, end = settings.get("beta_start", 0.00085), settings.get("beta_end", 0.012)
    if settings.get("trained_betas") is not None:
        betas = torch.tensor(settings["trained_betas"], dtype=torch.float64)
    elif settings.get("beta_schedule", "scaled_linear") == "scaled_linear":
        betas = torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float64) ** 2
    elif settings.get("beta_schedule") == "linear":
        betas = torch.linspace(start, end, steps, dtype=torch.float64)
    else:
        return None
    return torch.cumprod(1 - betas, dim=0)


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """ᾱ rescaled to zero terminal SNR, with A1111's finite final value (see the module docstring)."""
    root = alphas_cumprod.to(torch.float64).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    rescaled = ((root - last) * (first / (first - last))) ** 2
    rescaled[-1] = ZTSNR_FINAL_ALPHA_BAR
    return rescaled


def betas_of(alphas_cumprod: torch.Tensor) -> list[float]:
    """The betas whose cumulative product of (1 − β) is ``alphas_cumprod``."""
    previous = torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod.to(torch.float64)[:-1]])
    return (1 - alphas_cumprod.to(torch.float64) / previous).tolist()


def zero_terminal_snr_config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A scheduler config whose schedule is ``settings``' rescaled to zero terminal SNR."""
    alphas = alphas_cumprod_of(settings)
    if alphas is None:
        raise ValueError(f"zero terminal SNR needs a linear or scaled-linear beta schedule, not "
                         f"'{settings.get('beta_schedule')}'")
    out = {key: value for key, value in settings.items() if key != "rescale_betas_zero_snr"}
    return {**out, "trained_betas": betas_of(rescale_zero_terminal_snr(alphas))}


def sigmas_of(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """σ_t = √((1 − ᾱ_t) / ᾱ_t), the k-diffusion noise level of each training step."""
    alphas = alphas_cumprod.to(torch.float64)
    return ((1 - alphas) / alphas).sqrt()
