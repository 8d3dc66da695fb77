"""A1111 sampler names → the equivalent diffusers scheduler configuration.

A1111's k-diffusion samplers space their sigmas evenly over the model's full timestep range
("linspace" in diffusers); its "Karras" variants use Karras sigmas; DDIM and PLMS follow the
CompVis "leading" schedule with ``steps_offset = 1``. The mapping follows diffusers' own table of
A1111 equivalents.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from ckptbench.errors import SpecError


@dataclass(frozen=True)
class SamplerRecipe:
    scheduler: str  # diffusers scheduler class name
    options: dict[str, Any] = field(default_factory=dict)


_K = {"timestep_spacing": "linspace"}
_KARRAS = {"use_karras_sigmas": True}

SAMPLERS: dict[str, SamplerRecipe] = {
    "Euler": SamplerRecipe("EulerDiscreteScheduler", _K),
    "Euler a": SamplerRecipe("EulerAncestralDiscreteScheduler", _K),
    "Heun": SamplerRecipe("HeunDiscreteScheduler", _K),
    "LMS": SamplerRecipe("LMSDiscreteScheduler", _K),
    "LMS Karras": SamplerRecipe("LMSDiscreteScheduler", {**_K, **_KARRAS}),
    "DPM2": SamplerRecipe("KDPM2DiscreteScheduler", _K),
    "DPM2 Karras": SamplerRecipe("KDPM2DiscreteScheduler", {**_K, **_KARRAS}),
    "DPM2 a": SamplerRecipe("KDPM2AncestralDiscreteScheduler", _K),
    "DPM2 a Karras": SamplerRecipe("KDPM2AncestralDiscreteScheduler", {**_K, **_KARRAS}),
    "DPM++ 2M": SamplerRecipe("DPMSolverMultistepScheduler", _K),
    "DPM++ 2M Karras": SamplerRecipe("DPMSolverMultistepScheduler", {**_K, **_KARRAS}),
    "DPM++ 2M SDE": SamplerRecipe("DPMSolverMultistepScheduler", {**_K, "algorithm_type": "sde-dpmsolver++"}),
    "DPM++ 2M SDE Karras": SamplerRecipe(
        "DPMSolverMultistepScheduler", {**_K, **_KARRAS, "algorithm_type": "sde-dpmsolver++"}),
    "DPM++ SDE": SamplerRecipe("DPMSolverSDEScheduler", _K),
    "DPM++ SDE Karras": SamplerRecipe("DPMSolverSDEScheduler", {**_K, **_KARRAS}),
    "DDIM": SamplerRecipe("DDIMScheduler", {"timestep_spacing": "leading", "steps_offset": 1}),
    "PLMS": SamplerRecipe("PNDMScheduler", {"timestep_spacing": "leading", "steps_offset": 1,
                                            "skip_prk_steps": True}),
    "UniPC": SamplerRecipe("UniPCMultistepScheduler", _K),
}


def sampler_recipe(name: str) -> SamplerRecipe:
    if name in SAMPLERS:
        return SAMPLERS[name]
    close = difflib.get_close_matches(name, SAMPLERS, n=1, cutoff=0.5)
    hint = f"did you mean '{close[0]}'? " if close else ""
    raise SpecError(f"unknown sampler '{name}'; {hint}known A1111 sampler names: {', '.join(SAMPLERS)}.")


def make_scheduler(name: str, base_config: dict[str, Any]) -> Any:
    """A scheduler for sampler ``name``, keeping the model's own betas and prediction type."""
    import diffusers

    recipe = sampler_recipe(name)
    scheduler_class = getattr(diffusers, recipe.scheduler)
    return scheduler_class.from_config(base_config, **recipe.options)
