"""Sampling as A1111 1.10 does it: the registry of samplers and schedules, and the code that runs them.

* ``registry.py`` — the one table of samplers and noise schedules, and name resolution (A1111, ComfyUI);
* ``denoisers.py`` — the UNet as k-diffusion's CompVis denoiser and A1111's CFG denoiser around it;
* ``schedules.py`` — A1111's sigma schedules; ``noise.py`` — per-image noise and Brownian trees;
* ``kdiffusion.py``, ``restart.py``, ``timesteps.py``, ``unipc.py`` — the sampler functions;
* ``run.py`` — text-to-image and image-to-image sampling with a loaded pipeline.

Importing this package (the registry) does not import torch.
"""

from ckptbench.generate.samplers.registry import (
    AUTOMATIC,
    SAMPLER_TABLE,
    SAMPLERS,
    SCHEDULE_TABLE,
    SCHEDULES,
    ResolvedSampler,
    SamplerInfo,
    ScheduleInfo,
    accepted_sampler_names,
    resolve_sampler,
    schedule_steps,
)

__all__ = ["AUTOMATIC", "SAMPLERS", "SAMPLER_TABLE", "SCHEDULES", "SCHEDULE_TABLE", "ResolvedSampler",
           "SamplerInfo", "ScheduleInfo", "accepted_sampler_names", "resolve_sampler", "schedule_steps"]
