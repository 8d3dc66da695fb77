"""A1111's "Restart" sampler (``sd_samplers_extra.restart_sampler``; Xu et al. 2023, "Restart Sampling").

Heun steps down a Karras schedule; at 20 steps or more, once the schedule passes σ ≈ 0.1 it adds noise back
up to σ ≈ 2 and runs that stretch again (once with 9 restart steps; from 36 steps twice with steps // 4).
The noise comes from the images' generators, like the ancestral samplers'.
"""

from __future__ import annotations

from itertools import pairwise

import torch

from ckptbench.generate.samplers.kdiffusion import Denoiser, slope
from ckptbench.generate.samplers.noise import NoiseSampler
from ckptbench.generate.samplers.schedules import karras


def _karras(n: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    return karras(n, sigma_min, sigma_max, None, False)  # type: ignore[arg-type]


def _nearest(sigmas: torch.Tensor, value: float) -> int:
    return int(torch.argmin(abs(sigmas - value), dim=0))


def restart(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSampler) -> torch.Tensor:
    steps = sigmas.shape[0] - 1
    restarts: dict[int, tuple[int, int, float]] = {}
    if steps >= 20:
        restart_steps, times = (steps // 4, 2) if steps >= 36 else (9, 1)
        sigmas = _karras(steps - restart_steps * times, sigmas[-2].item(), sigmas[0].item())
        restarts = {_nearest(sigmas, 0.1): (restart_steps + 1, times, 2.0)}
    pairs: list[tuple[torch.Tensor, torch.Tensor]] = []
    for i in range(len(sigmas) - 1):
        pairs.append((sigmas[i], sigmas[i + 1]))
        if i + 1 not in restarts:
            continue
        count, times, top = restarts[i + 1]
        top_index = _nearest(sigmas, top)
        if top_index < i + 1:
            again = _karras(count, sigmas[i + 1].item(), sigmas[top_index].item())[:-1]
            pairs.extend(list(pairwise(again)) * times)
    ones = x.new_ones([x.shape[0]])
    last: torch.Tensor | None = None
    for sigma, following in pairs:
        if last is not None and last < sigma:  # back up the schedule: renoise from `last` to `sigma`
            x = x + noise(last, sigma) * 1.0 * (sigma**2 - last**2) ** 0.5
        d = slope(x, sigma, model(x, sigma * ones))
        dt = following - sigma
        if following == 0:
            x = x + d * dt
        else:
            trial = x + d * dt
            x = x + (d + slope(trial, following, model(trial, following * ones))) / 2 * dt
        last = following
    return x
