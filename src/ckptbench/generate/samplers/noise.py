"""Noise as A1111 draws it with ``RNG: CPU``: per image, from its own seed, independent of the batch.

``ImageNoise`` is A1111's ``rng.ImageRNG`` with the CPU source: one ``torch.Generator`` per image seeded
with the image's seed; the first draw is the starting noise and every later draw (the ancestral samplers'
noise, through A1111's ``TorchHijack.randn_like``) continues the same generator. A hires-fix pass starts
new generators from the same seeds, as A1111 does.

``BrownianNoise`` is k-diffusion's ``BrownianTreeNoiseSampler`` as A1111 creates it for the SDE samplers:
one ``torchsde.BrownianTree`` per image seeded with the image's seed, spanning the schedule's smallest
positive and largest sigma. ckptbench builds the trees on the CPU in float32 wherever the UNet runs, so an
image does not depend on the device; A1111 builds them on the GPU, where torchsde's numbers differ.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch

NoiseSampler = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class ImageNoise:
    def __init__(self, seeds: Sequence[int], shape: Sequence[int], device: torch.device) -> None:
        self.shape = tuple(shape)
        self.device = device
        self.generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]

    def next(self) -> torch.Tensor:
        """One (C, H, W) draw per image, stacked, on the device."""
        draws = [torch.randn(self.shape, generator=generator, dtype=torch.float32) for generator in self.generators]
        return torch.stack(draws).to(self.device)

    def sampler(self) -> NoiseSampler:
        """The noise sampler of the non-Brownian samplers: the next draw, whatever the sigmas."""
        return lambda _sigma, _sigma_next: self.next()


class BrownianNoise:
    """Unit-variance Brownian increments between two sigmas, one tree per image."""

    def __init__(self, seeds: Sequence[int], shape: Sequence[int], sigmas: torch.Tensor, device: torch.device) -> None:
        import torchsde

        sigmas = sigmas.detach().float().cpu()
        self.low, self.high = sigmas[sigmas > 0].min(), sigmas.max()
        start = torch.zeros(tuple(shape), dtype=torch.float32)
        self.trees = [torchsde.BrownianTree(self.low, start, self.high, entropy=int(seed)) for seed in seeds]
        self.device = device

    def __call__(self, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
        first, second = torch.as_tensor(sigma).cpu(), torch.as_tensor(sigma_next).cpu()
        sign = 1
        if second < first:
            first, second, sign = second, first, -1
        with warnings.catch_warnings():  # torchsde notes queries a rounding error outside the tree's span
            warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)
            increment = torch.stack([tree(first, second) for tree in self.trees]) * sign
        return (increment / (second - first).abs().sqrt()).to(self.device)
