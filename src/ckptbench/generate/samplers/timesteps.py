"""A1111's DDIM and PLMS over its own timestep grid (``sd_samplers_timesteps.py`` and ``_impl.py``).

The grid is ``range(0, 1000, 1000 // steps) + 1`` (one timestep more when ``steps`` does not divide 1000:
30 steps start at 991), ascending; the samplers walk it from the top and call the model at every timestep
but the first, ending at ᾱ of timestep 1. The model here returns the guided noise prediction ε. DDIM runs
with η = 0 (A1111's default), so it draws no noise. For img2img (the hires pass) A1111 noises the latents
to timestep ``t_enc`` and then walks ``grid[:t_enc]``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EpsModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def timestep_grid(steps: int, device: torch.device | None = None) -> torch.Tensor:
    return torch.clip(torch.arange(0, 1000, 1000 // steps, device=device) + 1, 0, 999)


def noised_to(x: torch.Tensor, noise: torch.Tensor, alphas_cumprod: torch.Tensor, timestep: torch.Tensor
              ) -> torch.Tensor:
    """img2img's start: ``x`` noised to ``timestep`` (A1111 ``CompVisSampler.sample_img2img``)."""
    alpha = alphas_cumprod[timestep]
    return x * torch.sqrt(alpha) + noise * torch.sqrt(1 - alpha)


class _Coefficients:
    """ᾱ at each grid point and at the one below it, as A1111 indexes them."""

    def __init__(self, x: torch.Tensor, grid: torch.Tensor, alphas_cumprod: torch.Tensor) -> None:
        self.alphas = alphas_cumprod[grid]
        # float64 as A1111 keeps it, except on MPS, which has no float64 (A1111 makes the same exception)
        wide = torch.float32 if x.device.type == "mps" else torch.float64
        self.previous = alphas_cumprod[torch.nn.functional.pad(grid[:-1], pad=(1, 0))].to(wide)
        self.roots = torch.sqrt(1 - self.alphas)
        self.ones = x.new_ones((x.shape[0], 1, 1, 1))

    def at(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ᾱ_t, ᾱ_prev, √(1 − ᾱ_t)), one per image."""
        return (self.alphas[index].item() * self.ones, self.previous[index].item() * self.ones,
                self.roots[index].item() * self.ones)

    def step(self, x: torch.Tensor, eps: torch.Tensor, index: int) -> torch.Tensor:
        """The deterministic DDIM update from grid point ``index`` to the one below."""
        alpha, previous, root = self.at(index)
        predicted = (x - root * eps) / alpha.sqrt()
        return previous.sqrt() * predicted + (1.0 - previous).sqrt() * eps  # η = 0: no noise term


def ddim(model: EpsModel, x: torch.Tensor, grid: torch.Tensor, alphas_cumprod: torch.Tensor,
         img2img: bool = False) -> torch.Tensor:
    """DDIM with η = 0 (``img2img``: the grid is already cut at the start, nothing else changes)."""
    coefficients = _Coefficients(x, grid, alphas_cumprod)
    rows = x.new_ones([x.shape[0]])
    for index in range(len(grid) - 1, 0, -1):
        x = coefficients.step(x, model(x, grid[index].item() * rows), index)
    return x


def plms(model: EpsModel, x: torch.Tensor, grid: torch.Tensor, alphas_cumprod: torch.Tensor,
         img2img: bool = False) -> torch.Tensor:
    """Pseudo linear multistep: a pseudo improved-Euler first step, then Adams–Bashforth of order 2, 3, 4."""
    coefficients = _Coefficients(x, grid, alphas_cumprod)
    rows = x.new_ones([x.shape[0]])
    history: list[torch.Tensor] = []
    for index in range(len(grid) - 1, 0, -1):
        eps = model(x, grid[index].item() * rows)
        if not history:
            trial = coefficients.step(x, eps, index)
            combined = (eps + model(trial, grid[max(index - 1, 0)].item() * rows)) / 2
        elif len(history) == 1:
            combined = (3 * eps - history[-1]) / 2
        elif len(history) == 2:
            combined = (23 * eps - 16 * history[-1] + 5 * history[-2]) / 12
        else:
            combined = (55 * eps - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24
        x = coefficients.step(x, combined, index)
        history = [*history, eps][-3:]
    return x

