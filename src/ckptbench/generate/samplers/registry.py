"""Every sampler and noise schedule ckptbench accepts, in one table, and how names resolve to them.

A sampler is a row of ``SAMPLER_TABLE``; a noise schedule a row of ``SCHEDULE_TABLE``. Rows name their
implementation by module (under ``ckptbench.generate.samplers``) and function, imported only when an
image is made, so that checking a spec does not import torch.

Names are A1111 1.10's: a sampler label ("DPM++ 2M") and a ``Schedule type`` ("Karras"), where
"Automatic" is the sampler's own default (``default_schedule``), as in A1111's sampler list. Also
accepted, and resolved to the same pair:

* the combined names of A1111 up to 1.8 ("DPM++ 2M Karras" = DPM++ 2M + Karras; a bare "DPM++ 2M"
  means what A1111 ≥ 1.9 makes of it: DPM++ 2M + Automatic = Karras);
* A1111's API aliases (``k_dpmpp_2m``);
* ComfyUI's sampler and scheduler names (``dpmpp_2m`` + ``karras``; ``normal`` is A1111's "Normal").

How a family adds samplers: add a ``SamplerInfo`` row here whose ``module``/``function`` name the code
that runs it, and list the model predictions it runs on in ``predictions`` (``"epsilon"``, ``"v"``,
``"flow"``). Samplers that integrate over a sigma schedule (``grid = "sigmas"``) take
``(denoiser, x, sigmas, noise)`` as the functions in ``kdiffusion.py`` do; a family whose model is driven
another way (a flow-matching transformer) adds its own ``grid`` kind and its branch in ``run.py``. A new
noise schedule is a ``ScheduleInfo`` row and a function in ``schedules.py``. ``tests/test_sampler_registry.py``
checks that every row's function exists and every name resolves.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ckptbench.errors import SpecError
from ckptbench.textfiles import closest

AUTOMATIC = "Automatic"
Grid = Literal["sigmas", "timesteps"]


@dataclass(frozen=True)
class SamplerInfo:
    """One sampler as A1111 1.10 defines it (``sd_samplers_kdiffusion.samplers_k_diffusion`` and friends)."""

    name: str  # A1111's label: what `Sampler:` says in an infotext
    module: str  # the module under ckptbench.generate.samplers that implements it
    function: str
    grid: Grid = "sigmas"  # integrates over a sigma schedule, or over A1111's own timestep grid
    default_schedule: str = "Uniform"  # what A1111's "Automatic" schedule type picks for this sampler
    second_order: bool = False  # A1111 counts prompt-editing steps twice (two model calls per step)
    discard_penultimate: bool = False  # schedule of steps + 1 sigmas, the next-to-last dropped
    brownian: bool = False  # SDE noise from a Brownian tree seeded per image
    denoiser: str = "compvis"  # "lcm": LCM's own 50-step denoiser
    options: tuple[tuple[str, Any], ...] = ()  # keyword arguments for the function
    comfy: tuple[str, ...] = ()  # ComfyUI's names for it
    aliases: tuple[str, ...] = ()  # A1111's API aliases
    predictions: tuple[str, ...] = ("epsilon", "v")

    def load(self) -> Callable[..., Any]:
        return getattr(importlib.import_module(f"ckptbench.generate.samplers.{self.module}"), self.function)


@dataclass(frozen=True)
class ScheduleInfo:
    """One A1111 1.10 ``Schedule type`` (``sd_schedulers.schedulers``)."""

    label: str  # what `Schedule type:` says
    name: str  # A1111's internal name
    function: str  # in schedules.py
    comfy: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()

    def load(self) -> Callable[..., Any]:
        return getattr(importlib.import_module("ckptbench.generate.samplers.schedules"), self.function)


_KARRAS, _EXPONENTIAL = "Karras", "Exponential"

SAMPLER_TABLE: tuple[SamplerInfo, ...] = (
    # k-diffusion's sampler functions over the CompVis denoiser (A1111 sd_samplers_kdiffusion.py)
    SamplerInfo("DPM++ 2M", "kdiffusion", "dpmpp_2m", default_schedule=_KARRAS, comfy=("dpmpp_2m",),
                aliases=("k_dpmpp_2m",)),
    SamplerInfo("DPM++ SDE", "kdiffusion", "dpmpp_sde", default_schedule=_KARRAS, second_order=True, brownian=True,
                comfy=("dpmpp_sde", "dpmpp_sde_gpu"), aliases=("k_dpmpp_sde",)),
    SamplerInfo("DPM++ 2M SDE", "kdiffusion", "dpmpp_2m_sde", default_schedule=_EXPONENTIAL, brownian=True,
                comfy=("dpmpp_2m_sde", "dpmpp_2m_sde_gpu"), aliases=("k_dpmpp_2m_sde",)),
    SamplerInfo("DPM++ 2M SDE Heun", "kdiffusion", "dpmpp_2m_sde", default_schedule=_EXPONENTIAL, brownian=True,
                options=(("solver_type", "heun"),), aliases=("k_dpmpp_2m_sde_heun",)),
    SamplerInfo("DPM++ 2S a", "kdiffusion", "dpmpp_2s_ancestral", default_schedule=_KARRAS, second_order=True,
                comfy=("dpmpp_2s_ancestral",), aliases=("k_dpmpp_2s_a",)),
    SamplerInfo("DPM++ 3M SDE", "kdiffusion", "dpmpp_3m_sde", default_schedule=_EXPONENTIAL,
                discard_penultimate=True, brownian=True, comfy=("dpmpp_3m_sde", "dpmpp_3m_sde_gpu"),
                aliases=("k_dpmpp_3m_sde",)),
    SamplerInfo("Euler a", "kdiffusion", "euler_ancestral", comfy=("euler_ancestral",),
                aliases=("k_euler_a", "k_euler_ancestral")),
    SamplerInfo("Euler", "kdiffusion", "euler", comfy=("euler",), aliases=("k_euler",)),
    SamplerInfo("LMS", "kdiffusion", "lms", comfy=("lms",), aliases=("k_lms",)),
    SamplerInfo("Heun", "kdiffusion", "heun", second_order=True, comfy=("heun",), aliases=("k_heun",)),
    SamplerInfo("DPM2", "kdiffusion", "dpm_2", default_schedule=_KARRAS, second_order=True,
                discard_penultimate=True, comfy=("dpm_2",), aliases=("k_dpm_2",)),
    SamplerInfo("DPM2 a", "kdiffusion", "dpm_2_ancestral", default_schedule=_KARRAS, second_order=True,
                discard_penultimate=True, comfy=("dpm_2_ancestral",), aliases=("k_dpm_2_a",)),
    # A1111's own k-diffusion-style samplers (sd_samplers_extra.py, sd_samplers_lcm.py)
    SamplerInfo("Restart", "restart", "restart", default_schedule=_KARRAS, second_order=True, aliases=("restart",)),
    SamplerInfo("LCM", "kdiffusion", "lcm", denoiser="lcm", comfy=("lcm",), aliases=("k_lcm",),
                predictions=("epsilon",)),
    # A1111's timestep samplers over its own grid (sd_samplers_timesteps.py, sd_samplers_timesteps_impl.py)
    SamplerInfo("DDIM", "timesteps", "ddim", grid="timesteps", comfy=("ddim",), aliases=("ddim",)),
    SamplerInfo("PLMS", "timesteps", "plms", grid="timesteps", aliases=("plms",)),
    SamplerInfo("UniPC", "unipc", "unipc", grid="timesteps", comfy=("uni_pc",), aliases=("unipc",)),
)

SCHEDULE_TABLE: tuple[ScheduleInfo, ...] = (
    ScheduleInfo("Uniform", "uniform", "uniform"),
    ScheduleInfo("Karras", "karras", "karras", comfy=("karras",)),
    ScheduleInfo("Exponential", "exponential", "exponential", comfy=("exponential",)),
    ScheduleInfo("Polyexponential", "polyexponential", "polyexponential"),
    ScheduleInfo("SGM Uniform", "sgm_uniform", "sgm_uniform", comfy=("sgm_uniform",), aliases=("SGMUniform",)),
    ScheduleInfo("KL Optimal", "kl_optimal", "kl_optimal", comfy=("kl_optimal",)),
    ScheduleInfo("Align Your Steps", "align_your_steps", "align_your_steps"),
    ScheduleInfo("Simple", "simple", "simple", comfy=("simple",)),
    ScheduleInfo("Normal", "normal", "normal", comfy=("normal",)),
    ScheduleInfo("DDIM", "ddim", "ddim", comfy=("ddim_uniform",)),
    ScheduleInfo("Beta", "beta", "beta", comfy=("beta",)),
)

SAMPLERS: dict[str, SamplerInfo] = {info.name: info for info in SAMPLER_TABLE}
SCHEDULES: dict[str, ScheduleInfo] = {info.label: info for info in SCHEDULE_TABLE}
_SAMPLER_NAMES = {alias: info for info in SAMPLER_TABLE for alias in (*info.aliases, *info.comfy)} | SAMPLERS
_SCHEDULE_NAMES = {alias: info for info in SCHEDULE_TABLE
                   for alias in (info.name, *info.aliases, *info.comfy)} | SCHEDULES


@dataclass(frozen=True)
class ResolvedSampler:
    """A sampler and the schedule it runs with (None: the sampler has its own timestep grid)."""

    sampler: SamplerInfo
    schedule: ScheduleInfo | None

    @property
    def name(self) -> str:
        return self.sampler.name

    @property
    def schedule_label(self) -> str | None:
        return self.schedule.label if self.schedule else None

    @property
    def label(self) -> str:
        """One name in A1111's pre-1.9 style ("DPM++ 2M Karras"), for tables and file names."""
        return f"{self.name} {self.schedule.label}" if self.schedule else self.name

    def prompt_steps(self, steps: int) -> int:
        """The step count A1111 gives prompt editing: model calls, two per step for second-order samplers."""
        return steps * 2 if self.sampler.second_order else steps


def resolve_sampler(sampler: str, schedule: str | None = None) -> ResolvedSampler:
    """The sampler and schedule that ``sampler`` (any accepted name) and ``schedule`` (a ``Schedule type``,
    ComfyUI scheduler name, "Automatic" or None) mean. Raises ``SpecError`` naming the fix."""
    info, suffix = _find_sampler(sampler)
    chosen = _find_schedule(schedule) if schedule not in (None, "", AUTOMATIC) else None
    if suffix is not None and chosen is not None and chosen != suffix:
        raise SpecError(f"sampler '{sampler}' already names the schedule '{suffix.label}', but the schedule type is "
                        f"'{schedule}'; give the sampler as '{info.name}' with one schedule type.")
    chosen = chosen or suffix
    if info.grid == "timesteps":
        if chosen is not None:
            raise SpecError(f"sampler '{info.name}' runs on A1111's own timestep grid, where a schedule type has no "
                            f"effect; leave the schedule type out (or 'Automatic') instead of '{schedule or sampler}'.")
        return ResolvedSampler(info, None)
    return ResolvedSampler(info, chosen or SCHEDULES[info.default_schedule])


def schedule_steps(sampler: str, steps: int, schedule: str | None = None) -> int:
    """The step count A1111 gives prompt editing for ``steps`` steps of this sampler (``prompt_steps``)."""
    return resolve_sampler(sampler, schedule).prompt_steps(steps)


def accepted_sampler_names() -> list[str]:
    """Every accepted sampler name: A1111 labels, pre-1.9 combined names, A1111 aliases, ComfyUI names."""
    combined = [f"{info.name} {schedule}" for info in SAMPLER_TABLE if info.grid == "sigmas" for schedule in SCHEDULES]
    return [*SAMPLERS, *combined, *(name for name in _SAMPLER_NAMES if name not in SAMPLERS)]


def _find_sampler(name: str) -> tuple[SamplerInfo, ScheduleInfo | None]:
    if name in _SAMPLER_NAMES:
        return _SAMPLER_NAMES[name], None
    # A1111 ≤ 1.8 names carry the schedule as a suffix ("DPM++ 2M Karras"); the longest suffix wins.
    for label in sorted(_SCHEDULE_NAMES, key=len, reverse=True):
        base = name.removesuffix(f" {label}")
        if base != name and base in SAMPLERS and SAMPLERS[base].grid == "sigmas":
            return SAMPLERS[base], _SCHEDULE_NAMES[label]
    close = closest(name, accepted_sampler_names(), cutoff=0.5)
    hint = f"did you mean '{close}'? " if close else ""
    raise SpecError(f"unknown sampler '{name}'; {hint}A1111 sampler names: {', '.join(SAMPLERS)} (with a schedule type "
                    "such as 'Karras' as its own setting or as a suffix, 'DPM++ 2M Karras'), or ComfyUI names such as "
                    "'dpmpp_2m'.")


def _find_schedule(name: str) -> ScheduleInfo:
    if name in _SCHEDULE_NAMES:
        return _SCHEDULE_NAMES[name]
    close = closest(name, [AUTOMATIC, *_SCHEDULE_NAMES], cutoff=0.5)
    hint = f"did you mean '{close}'? " if close else ""
    raise SpecError(f"unknown schedule type '{name}'; {hint}A1111 schedule types: {AUTOMATIC}, {', '.join(SCHEDULES)} "
                    "(ComfyUI's scheduler names are accepted too).")
