"""A1111 sampler names → the equivalent diffusers scheduler configuration.

Names follow A1111 up to 1.8, where the noise schedule is part of the name ("DPM++ 2M Karras"); A1111
1.9+ writes "Sampler: DPM++ 2M, Schedule type: Karras", which ``infotext.sampler_name`` maps back.

Noise schedules, as A1111 makes them (``tests/test_samplers.py`` checks each against a hand computation):

* k-diffusion samplers (Euler, Euler a, Heun, LMS, DPM2, DPM++ …) space ``steps`` timesteps evenly
  from 999 down to 0 (``CompVisDenoiser.get_sigmas``) and end at sigma 0. diffusers' ``"linspace"``
  spacing gives exactly that for the single-step schedulers; its multistep schedulers
  (``DPMSolverMultistepScheduler``) space ``steps + 1`` points and drop the last, which stops at
  t = 50 instead of 0 (a last sigma of 0.23 instead of 0.03 on SD1.x), so "DPM++ 2M" and
  "DPM++ 2M SDE" use a subclass that installs the k-diffusion sigmas.
* "Karras" variants use Karras sigmas between the model's smallest and largest sigma (rho 7);
  "Exponential" variants sigmas evenly spaced in log sigma.
* DDIM and PLMS use the CompVis schedule: every ``1000 // steps``-th timestep, offset by 1.
* UniPC is A1111's own default configuration: ``bh1`` variant, order 3, time-uniform steps from
  t = 999 to t = 0, ending at the smallest sigma rather than 0.

Known differences that remain: A1111's DPM2 samplers drop the next-to-last sigma (diffusers' do not),
and the stochastic samplers draw their noise differently (same distribution, different numbers).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ckptbench.errors import SpecError
from ckptbench.textfiles import closest

if TYPE_CHECKING:  # torch is imported where sigmas are computed: checking sampler names must not load it
    import torch


@dataclass(frozen=True)
class SamplerRecipe:
    scheduler: str  # diffusers scheduler class name
    options: dict[str, Any] = field(default_factory=dict)
    kdiffusion_uniform: bool = False  # replace the scheduler's sigmas by k-diffusion's uniform ones
    second_order: bool = False  # two model calls per step: A1111 counts prompt-editing steps twice


_K = {"timestep_spacing": "linspace"}
_KARRAS = {"use_karras_sigmas": True}
_EXPONENTIAL = {"use_exponential_sigmas": True}
_SDE = {"algorithm_type": "sde-dpmsolver++"}
_COMPVIS = {"timestep_spacing": "leading", "steps_offset": 1}

SAMPLERS: dict[str, SamplerRecipe] = {
    "Euler": SamplerRecipe("EulerDiscreteScheduler", _K),
    "Euler a": SamplerRecipe("EulerAncestralDiscreteScheduler", _K),
    "Heun": SamplerRecipe("HeunDiscreteScheduler", _K, second_order=True),
    "LMS": SamplerRecipe("LMSDiscreteScheduler", _K),
    "LMS Karras": SamplerRecipe("LMSDiscreteScheduler", {**_K, **_KARRAS}),
    "DPM2": SamplerRecipe("KDPM2DiscreteScheduler", _K, second_order=True),
    "DPM2 Karras": SamplerRecipe("KDPM2DiscreteScheduler", {**_K, **_KARRAS}, second_order=True),
    "DPM2 a": SamplerRecipe("KDPM2AncestralDiscreteScheduler", _K, second_order=True),
    "DPM2 a Karras": SamplerRecipe("KDPM2AncestralDiscreteScheduler", {**_K, **_KARRAS}, second_order=True),
    "DPM++ 2M": SamplerRecipe("DPMSolverMultistepScheduler", _K, kdiffusion_uniform=True),
    "DPM++ 2M Karras": SamplerRecipe("DPMSolverMultistepScheduler", {**_K, **_KARRAS}),
    "DPM++ 2M SDE": SamplerRecipe("DPMSolverMultistepScheduler", {**_K, **_SDE}, kdiffusion_uniform=True),
    "DPM++ 2M SDE Karras": SamplerRecipe("DPMSolverMultistepScheduler", {**_K, **_KARRAS, **_SDE}),
    "DPM++ 2M SDE Exponential": SamplerRecipe("DPMSolverMultistepScheduler", {**_K, **_EXPONENTIAL, **_SDE}),
    "DPM++ SDE": SamplerRecipe("DPMSolverSDEScheduler", _K, second_order=True),
    "DPM++ SDE Karras": SamplerRecipe("DPMSolverSDEScheduler", {**_K, **_KARRAS}, second_order=True),
    "DDIM": SamplerRecipe("DDIMScheduler", _COMPVIS),
    "PLMS": SamplerRecipe("PNDMScheduler", {**_COMPVIS, "skip_prk_steps": True}),
    "UniPC": SamplerRecipe("UniPCMultistepScheduler", {
        **_K, "solver_type": "bh1", "solver_order": 3, "final_sigmas_type": "sigma_min"}),
}


def sampler_recipe(name: str) -> SamplerRecipe:
    if name in SAMPLERS:
        return SAMPLERS[name]
    close = closest(name, SAMPLERS, cutoff=0.5)
    hint = f"did you mean '{close}'? " if close else ""
    raise SpecError(f"unknown sampler '{name}'; {hint}known A1111 sampler names: {', '.join(SAMPLERS)}.")


def schedule_steps(name: str, steps: int) -> int:
    """The step count A1111 gives prompt editing: model calls, two per step for second-order samplers."""
    return steps * 2 if sampler_recipe(name).second_order else steps


def make_scheduler(name: str, base_config: dict[str, Any]) -> Any:
    """A scheduler for sampler ``name``, keeping the model's own betas and prediction type."""
    import diffusers

    recipe = sampler_recipe(name)
    scheduler_class = getattr(diffusers, recipe.scheduler)
    if recipe.kdiffusion_uniform:
        scheduler_class = _with_kdiffusion_uniform_sigmas(scheduler_class)
    return scheduler_class.from_config(base_config, **recipe.options)


def kdiffusion_uniform_sigmas(alphas_cumprod: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-diffusion's ``get_sigmas(steps)`` without the final 0: (sigmas, fractional timesteps).

    Timesteps evenly spaced from the last training step to 0; sigma interpolated in log space between
    the training steps around each one, as ``CompVisDenoiser.t_to_sigma`` does.
    """
    import torch

    alphas = alphas_cumprod.to(torch.float64)
    log_sigmas = (((1 - alphas) / alphas) ** 0.5).log()
    t = torch.linspace(len(alphas) - 1, 0, steps, dtype=torch.float64)
    low = t.floor().long()
    high = t.ceil().long()
    fraction = t - low
    return ((1 - fraction) * log_sigmas[low] + fraction * log_sigmas[high]).exp(), t


@functools.cache
def _with_kdiffusion_uniform_sigmas(base: type) -> type:
    """``base`` whose ``set_timesteps(steps)`` installs k-diffusion's uniform sigmas (final sigma kept)."""

    def set_timesteps(self: Any, num_inference_steps: int | None = None, device: Any = None, **kwargs: Any) -> None:
        base.set_timesteps(self, num_inference_steps, device, **kwargs)
        if num_inference_steps is None or any(value is not None for value in kwargs.values()):
            return  # custom timesteps or sigmas were asked for: leave them
        import torch

        sigmas, t = kdiffusion_uniform_sigmas(self.alphas_cumprod, num_inference_steps)
        self.sigmas = torch.cat([sigmas.to(self.sigmas.dtype), self.sigmas[-1:]])
        # The UNet gets the rounded timestep, as diffusers does for its Karras sigmas.
        self.timesteps = t.round().to(self.timesteps.device, self.timesteps.dtype)

    return type(f"KDiffusionUniform{base.__name__}", (base,), {"set_timesteps": set_timesteps})
