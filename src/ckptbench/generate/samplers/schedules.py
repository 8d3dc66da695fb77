"""A1111 1.10's noise schedules (``sd_schedulers.py``): ``n`` sigmas from σ_max down, then (mostly) 0.

Every function takes the step count, the model's smallest and largest sigma (Python floats, as A1111 passes
them), the model's discrete schedule (``denoisers.DiscreteSchedule``) and whether the model is SDXL, and
returns float32 sigmas on the CPU. ``sampler_sigmas`` adds A1111's "discard the next-to-last sigma".
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ckptbench.generate.samplers.denoisers import DiscreteSchedule
from ckptbench.generate.samplers.registry import ResolvedSampler

# A1111's beta_dist_alpha / beta_dist_beta defaults; it records them in the infotext when "Beta" runs.
BETA_ALPHA = BETA_BETA = 0.6
# Align Your Steps (NVIDIA's published 10-step sigmas, as A1111 lists them)
_AYS_SD15 = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
_AYS_SDXL = [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029]


def infotext_fields(schedule_label: str | None) -> dict[str, object]:
    """What A1111 adds to the infotext for a schedule: "Beta" records its distribution's parameters."""
    return {"Beta schedule alpha": BETA_ALPHA, "Beta schedule beta": BETA_BETA} if schedule_label == "Beta" else {}


def sampler_sigmas(resolved: ResolvedSampler, steps: int, model: DiscreteSchedule, sdxl: bool) -> torch.Tensor:
    """A1111's ``KDiffusionSampler.get_sigmas``: the schedule of ``steps`` steps for this sampler."""
    assert resolved.schedule is not None, "timestep samplers have no sigma schedule"
    discard = resolved.sampler.discard_penultimate
    count = steps + 1 if discard else steps
    sigma_min, sigma_max = model.sigmas[0].item(), model.sigmas[-1].item()
    sigmas = resolved.schedule.load()(count, sigma_min, sigma_max, model, sdxl).float().cpu()
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas


def _with_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def _listed(values: list[float]) -> torch.Tensor:
    return torch.tensor([float(value) for value in values] + [0.0], dtype=torch.float32)


def uniform(n: int, sigma_min: float, sigma_max: float, model: DiscreteSchedule, sdxl: bool) -> torch.Tensor:
    return model.get_sigmas(n)


def karras(n: int, sigma_min: float, sigma_max: float, model: DiscreteSchedule, sdxl: bool,
           rho: float = 7.0) -> torch.Tensor:
    """Karras et al. (2022): evenly spaced in σ^(1/ρ)."""
    low, high = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _with_zero((high + torch.linspace(0, 1, n) * (low - high)) ** rho)


def exponential(n: int, sigma_min: float, sigma_max: float, model: DiscreteSchedule, sdxl: bool) -> torch.Tensor:
    """Evenly spaced in log σ."""
    return _with_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp())


def polyexponential(n: int, sigma_min: float, sigma_max: float, model: DiscreteSchedule, sdxl: bool,
                    rho: float = 1.0) -> torch.Tensor:
    ramp = torch.linspace(1, 0, n) ** rho
    return _with_zero(torch.exp(ramp * (math.log(sigma_max) - math.log(sigma_min)) + math.log(sigma_min)))


def sgm_uniform(n: int, sigma_min: float, sigma_max: float, model: DiscreteSchedule, sdxl: bool) -> torch.Tensor:
    """n + 1 timesteps evenly spaced between σ_max's and σ_min's, the last dropped."""
    start, end = model.sigma_to_t(torch.tensor(sigma_max)), model.sigma_to_t(torch.tensor(sigma_min))
    return _listed([model.t_to_sigma(t) for t in torch.linspace(start, end, n + 1)[:-1]])


def normal(n: int, sigma_min: float, sigma_max: float, model: DiscreteSchedule, sdxl: bool) -> torch.Tensor:
    """n timesteps evenly spaced between σ_max's and σ_min's (ComfyUI's "normal")."""
    start, end = model.sigma_to_t(torch.tensor(sigma_max)), model.sigma_to_t(torch.tensor(sigma_min))
    return _listed([model.t_to_sigma(t) for t in torch.linspace(start, end, n)])


def kl_optimal(n: int, sigma_min: float, sigma_max: float, model: DiscreteSchedule, sdxl: bool) -> torch.Tensor:
    """Evenly spaced in arctan σ, from σ_max to σ_min (no final 0, as A1111)."""
    low, high = torch.arctan(torch.tensor(sigma_min)), torch.arctan(torch.tensor(sigma_max))
    fraction = torch.arange(n + 1) / n
    return torch.tan(fraction * low + (1.0 - fraction) * high)


def align_your_steps(n: int, sigma_min: float, sigma_max: float, model: DiscreteSchedule, sdxl: bool
                     ) -> torch.Tensor:
    """NVIDIA's 10-step sigmas, log-linearly interpolated to n."""
    published = _AYS_SDXL if sdxl else _AYS_SD15
    if n == len(published):
        return _listed(published)
    positions = np.linspace(0, 1, len(published))
    logs = np.log(published[::-1])
    interpolated = np.exp(np.interp(np.linspace(0, 1, n), positions, logs))[::-1]
    return _listed(list(interpolated))


def simple(n: int, sigma_min: float, sigma_max: float, model: DiscreteSchedule, sdxl: bool) -> torch.Tensor:
    """Every (1000 / n)-th training sigma from the top."""
    stride = len(model.sigmas) / n
    return _listed([model.sigmas[-(1 + int(step * stride))] for step in range(n)])


def ddim(n: int, sigma_min: float, sigma_max: float, model: DiscreteSchedule, sdxl: bool) -> torch.Tensor:
    """The training sigmas at 1, 1 + 1000 // n, …, highest first (one more step when n does not divide 1000)."""
    stride = max(len(model.sigmas) // n, 1)
    return _listed([model.sigmas[index] for index in range(1, len(model.sigmas), stride)][::-1])


def beta(n: int, sigma_min: float, sigma_max: float, model: DiscreteSchedule, sdxl: bool) -> torch.Tensor:
    """Quantiles of a Beta(0.6, 0.6) distribution, mapped linearly onto [σ_min, σ_max] (as A1111 1.10 does)."""
    from scipy import stats

    quantiles = [stats.beta.ppf(x, BETA_ALPHA, BETA_BETA) for x in 1 - np.linspace(0, 1, n)]
    return _listed([sigma_min + (q * (sigma_max - sigma_min)) for q in quantiles])
