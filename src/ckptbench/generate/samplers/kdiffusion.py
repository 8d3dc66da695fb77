"""The k-diffusion samplers A1111 runs, with A1111's settings, over a denoiser ``model(x, σ) → x₀``.

Each function integrates from ``sigmas[0]`` to ``sigmas[-1]`` (0) as the function of the same name in
k-diffusion's ``sampling.py`` does (the version A1111 1.10 pins; PyPI's k-diffusion 0.0.16 has the same
file), with A1111's defaults: no churn, η = 1 for the ancestral and SDE samplers, s_noise = 1. The
arithmetic is kept in k-diffusion's order so that results agree to the last bit (``tests/test_sampler_parity.py``
runs both). ``noise(σ, σ_next)`` gives the next noise draw: per-image generators, or Brownian increments
for the SDE samplers (``noise.py``). ``lcm`` is A1111's own ``sd_samplers_lcm.sample_lcm``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ckptbench.generate.samplers.noise import NoiseSampler

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def slope(x: torch.Tensor, sigma: torch.Tensor, denoised: torch.Tensor) -> torch.Tensor:
    """dx/dσ of the probability-flow ODE (Karras et al. 2022)."""
    return (x - denoised) / sigma


def ancestral_step(sigma: torch.Tensor, sigma_next: torch.Tensor, eta: float = 1.0
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(σ_down, σ_up): the level to step down to deterministically, and the noise to add after."""
    up = min(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
    return (sigma_next**2 - up**2) ** 0.5, up


def _log_time(sigma: torch.Tensor) -> torch.Tensor:
    """DPM-Solver's time t = −log σ."""
    return sigma.log().neg()


def _sigma_at(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


def euler(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSampler) -> torch.Tensor:
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i] * 1.0  # k-diffusion's σ̂ = σ (γ + 1) with no churn
        denoised = model(x, sigma * ones)
        x = x + slope(x, sigma, denoised) * (sigmas[i + 1] - sigma)
    return x


def euler_ancestral(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSampler) -> torch.Tensor:
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * ones)
        down, up = ancestral_step(sigmas[i], sigmas[i + 1])
        x = x + slope(x, sigmas[i], denoised) * (down - sigmas[i])
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * 1.0 * up
    return x


def heun(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSampler) -> torch.Tensor:
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma, following = sigmas[i] * 1.0, sigmas[i + 1]
        d = slope(x, sigma, model(x, sigma * ones))
        dt = following - sigma
        if following == 0:
            x = x + d * dt
            continue
        trial = x + d * dt
        d_trial = slope(trial, following, model(trial, following * ones))
        x = x + (d + d_trial) / 2 * dt
    return x


def dpm_2(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSampler) -> torch.Tensor:
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma, following = sigmas[i] * 1.0, sigmas[i + 1]
        d = slope(x, sigma, model(x, sigma * ones))
        if following == 0:
            x = x + d * (following - sigma)
            continue
        middle = sigma.log().lerp(following.log(), 0.5).exp()  # the geometric midpoint
        half = x + d * (middle - sigma)
        x = x + slope(half, middle, model(half, middle * ones)) * (following - sigma)
    return x


def dpm_2_ancestral(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSampler) -> torch.Tensor:
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i]
        denoised = model(x, sigma * ones)
        down, up = ancestral_step(sigma, sigmas[i + 1])
        d = slope(x, sigma, denoised)
        if down == 0:
            x = x + d * (down - sigma)
            continue
        middle = sigma.log().lerp(down.log(), 0.5).exp()
        half = x + d * (middle - sigma)
        x = x + slope(half, middle, model(half, middle * ones)) * (down - sigma)
        x = x + noise(sigma, sigmas[i + 1]) * 1.0 * up
    return x


def lms(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSampler, order: int = 4) -> torch.Tensor:
    """Linear multistep: the last ``order`` slopes, weighted by the integrals of their Lagrange polynomials."""
    ones = x.new_ones([x.shape[0]])
    points = sigmas.detach().cpu().numpy()
    slopes: list[torch.Tensor] = []
    for i in range(len(sigmas) - 1):
        slopes.append(slope(x, sigmas[i], model(x, sigmas[i] * ones)))
        slopes = slopes[-order:]
        used = min(i + 1, order)
        weights = [_lagrange_integral(used, points, i, j) for j in range(used)]
        x = x + sum(weight * d for weight, d in zip(weights, reversed(slopes), strict=False))
    return x


def _lagrange_integral(order: int, points: object, i: int, j: int) -> float:
    """∫ from points[i] to points[i+1] of the Lagrange basis polynomial of node i − j over nodes i … i − order + 1."""
    from scipy import integrate

    def basis(tau: float) -> float:
        value = 1.0
        for k in range(order):
            if k != j:
                value *= (tau - points[i - k]) / (points[i - j] - points[i - k])  # type: ignore[index]
        return value

    return integrate.quad(basis, points[i], points[i + 1], epsrel=1e-4)[0]  # type: ignore[index]


def dpmpp_2s_ancestral(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSampler) -> torch.Tensor:
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * ones)
        down, up = ancestral_step(sigmas[i], sigmas[i + 1])
        if down == 0:
            x = x + slope(x, sigmas[i], denoised) * (down - sigmas[i])
        else:
            t, t_next = _log_time(sigmas[i]), _log_time(down)
            h = t_next - t
            s = t + 1 / 2 * h
            half = (_sigma_at(s) / _sigma_at(t)) * x - (-h * (1 / 2)).expm1() * denoised
            x = (_sigma_at(t_next) / _sigma_at(t)) * x - (-h).expm1() * model(half, _sigma_at(s) * ones)
        if sigmas[i + 1] > 0:
            x = x + noise(sigmas[i], sigmas[i + 1]) * 1.0 * up
    return x


def dpmpp_sde(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSampler) -> torch.Tensor:
    """DPM-Solver++ (stochastic), two model calls per step at r = 1/2."""
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * ones)
        if sigmas[i + 1] == 0:
            x = x + slope(x, sigmas[i], denoised) * (sigmas[i + 1] - sigmas[i])
            continue
        t, t_next = _log_time(sigmas[i]), _log_time(sigmas[i + 1])
        h = t_next - t
        s = t + h * (1 / 2)
        down, up = ancestral_step(_sigma_at(t), _sigma_at(s))
        s_down = _log_time(down)
        half = (_sigma_at(s_down) / _sigma_at(t)) * x - (t - s_down).expm1() * denoised
        half = half + noise(_sigma_at(t), _sigma_at(s)) * 1.0 * up
        denoised_half = model(half, _sigma_at(s) * ones)
        down, up = ancestral_step(_sigma_at(t), _sigma_at(t_next))
        t_down = _log_time(down)
        mixed = (1 - 1.0) * denoised + 1.0 * denoised_half
        x = (_sigma_at(t_down) / _sigma_at(t)) * x - (t - t_down).expm1() * mixed
        x = x + noise(_sigma_at(t), _sigma_at(t_next)) * 1.0 * up
    return x


def dpmpp_2m(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSampler) -> torch.Tensor:
    """DPM-Solver++(2M): second order from the previous step's denoised latent."""
    ones = x.new_ones([x.shape[0]])
    previous: torch.Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * ones)
        t, t_next = _log_time(sigmas[i]), _log_time(sigmas[i + 1])
        h = t_next - t
        target = denoised
        if previous is not None and sigmas[i + 1] != 0:
            ratio = (t - _log_time(sigmas[i - 1])) / h
            target = (1 + 1 / (2 * ratio)) * denoised - (1 / (2 * ratio)) * previous
        x = (_sigma_at(t_next) / _sigma_at(t)) * x - (-h).expm1() * target
        previous = denoised
    return x


def dpmpp_2m_sde(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSampler,
                 solver_type: str = "midpoint") -> torch.Tensor:
    """DPM-Solver++(2M) SDE, η = 1; ``solver_type`` "heun" is A1111's "DPM++ 2M SDE Heun"."""
    ones = x.new_ones([x.shape[0]])
    previous: torch.Tensor | None = None
    h_last = h = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * ones)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = -sigmas[i + 1].log() - -sigmas[i].log()
            eta_h = 1.0 * h
            decay = (-h - eta_h).expm1().neg()
            x = sigmas[i + 1] / sigmas[i] * (-eta_h).exp() * x + decay * denoised
            if previous is not None:
                ratio = h_last / h
                if solver_type == "heun":
                    x = x + (decay / (-h - eta_h) + 1) * (1 / ratio) * (denoised - previous)
                else:
                    x = x + 0.5 * decay * (1 / ratio) * (denoised - previous)
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * eta_h).expm1().neg().sqrt() * 1.0
        previous, h_last = denoised, h
    return x


def dpmpp_3m_sde(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSampler) -> torch.Tensor:
    """DPM-Solver++(3M) SDE, η = 1: third order from the two previous denoised latents."""
    ones = x.new_ones([x.shape[0]])
    denoised_1 = denoised_2 = None
    h = h_1 = h_2 = None
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * ones)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            h = -sigmas[i + 1].log() - -sigmas[i].log()
            h_eta = h * (1.0 + 1)
            x = torch.exp(-h_eta) * x + (-h_eta).expm1().neg() * denoised
            phi_2 = h_eta.neg().expm1() / h_eta + 1
            if h_2 is not None:
                r0, r1 = h_1 / h, h_2 / h
                d1_0 = (denoised - denoised_1) / r0
                d1_1 = (denoised_1 - denoised_2) / r1
                d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
                d2 = (d1_0 - d1_1) / (r0 + r1)
                x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
            elif h_1 is not None:
                x = x + phi_2 * ((denoised - denoised_1) / (h_1 / h))
            x = x + noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * (-2 * h * 1.0).expm1().neg().sqrt() * 1.0
        denoised_1, denoised_2 = denoised, denoised_1
        h_1, h_2 = h, h_1
    return x


def lcm(model: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, noise: NoiseSampler) -> torch.Tensor:
    """A1111's LCM sampler: jump to the denoised latent, then noise it to the next sigma."""
    ones = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        x = model(x, sigmas[i] * ones)
        if sigmas[i + 1] > 0:
            x += sigmas[i + 1] * noise(sigmas[i], sigmas[i + 1])
    return x
