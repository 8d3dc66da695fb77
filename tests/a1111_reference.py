"""A1111 v1.10's sampling procedure, restated for the parity tests, over k-diffusion's own code.

What comes from k-diffusion is k-diffusion itself (PyPI ``k-diffusion==0.0.16``, whose ``sampling.py`` and
``external.py`` equal those of 0.1.1.post1; A1111 1.10 pins git commit ab527a9 of mid-2023): its sampler
functions, ``CompVisDenoiser``/``CompVisVDenoiser``, ``BrownianTreeNoiseSampler`` and Karras/exponential/
polyexponential schedules. Those files are loaded on their own (``kdiffusion()``): the package's
``__init__`` imports its training and evaluation stack (CLIP, kornia, scikit-image), which the samplers do
not use and whose CLIP needs ``pkg_resources`` (gone from setuptools ≥ 81).

What A1111 adds is restated here from AUTOMATIC1111/stable-diffusion-webui v1.10:
``modules/sd_samplers_kdiffusion.py`` (sampler table, ``get_sigmas``, ``sample``, ``sample_img2img``,
``create_noise_sampler``), ``modules/sd_samplers_cfg_denoiser.py`` (``CFGDenoiser``), ``modules/rng.py``
(``ImageRNG``, CPU source), ``modules/sd_samplers_common.py`` (``TorchHijack``, ``setup_img2img_steps``),
``modules/sd_schedulers.py``, ``modules/sd_samplers_extra.py`` (Restart), ``modules/sd_samplers_lcm.py``,
``modules/sd_samplers_timesteps.py`` and ``sd_samplers_timesteps_impl.py`` (DDIM, PLMS, UniPC) and
``modules/models/diffusion/uni_pc/uni_pc.py``. Options are A1111's defaults.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import inspect
import sys
import types
from itertools import pairwise
from pathlib import Path

import numpy as np
import torch

_PACKAGE = "_kdiffusion_reference"


def kdiffusion() -> types.SimpleNamespace:
    """k-diffusion's ``sampling`` and ``external`` modules, loaded from the installed distribution."""
    if _PACKAGE not in sys.modules:
        root = Path(str(importlib.metadata.distribution("k-diffusion").locate_file("k_diffusion")))
        package = types.ModuleType(_PACKAGE)
        package.__path__ = [str(root)]
        sys.modules[_PACKAGE] = package
        for name in ("utils", "sampling", "external"):
            spec = importlib.util.spec_from_file_location(f"{_PACKAGE}.{name}", root / f"{name}.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
            setattr(package, name, module)
    package = sys.modules[_PACKAGE]
    return types.SimpleNamespace(sampling=package.sampling, external=package.external)


def ldm_alphas_cumprod(beta_start: float = 0.00085, beta_end: float = 0.012, count: int = 1000) -> torch.Tensor:
    """LDM ``register_schedule`` for the "linear" (in √β) schedule: float64 numpy, kept as a float32 buffer."""
    betas = (torch.linspace(beta_start**0.5, beta_end**0.5, count, dtype=torch.float64) ** 2).numpy()
    return torch.tensor(np.cumprod(1.0 - betas, axis=0), dtype=torch.float32)


class LdmModel:
    """What A1111's denoisers call: ``alphas_cumprod`` and ``apply_model(x, t, cond)`` (cond = text states)."""

    def __init__(self, unet: torch.nn.Module, alphas_cumprod: torch.Tensor, prediction: str = "epsilon") -> None:
        self.unet = unet
        self.alphas_cumprod = alphas_cumprod
        self.parameterization = "v" if prediction == "v_prediction" else "eps"
        double = alphas_cumprod.double()  # LDM keeps these from its float64 arrays
        self.sqrt_alphas_cumprod = double.sqrt().float()
        self.sqrt_one_minus_alphas_cumprod = (1 - double).sqrt().float()

    def apply_model(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.unet(x, t, encoder_hidden_states=cond, return_dict=False)[0]


class ImageRNG:
    """``rng.ImageRNG`` with ``randn_source = "CPU"``: a generator per seed; draws continue it."""

    def __init__(self, shape: tuple[int, ...], seeds: list[int]) -> None:
        self.shape = shape
        self.generators = [torch.Generator(device="cpu").manual_seed(int(seed)) for seed in seeds]

    def next(self) -> torch.Tensor:
        return torch.stack([torch.randn(self.shape, device="cpu", generator=g) for g in self.generators])


class TorchHijack:
    """``sd_samplers_common.TorchHijack``: k-diffusion's ``torch.randn_like`` becomes the next RNG draw."""

    def __init__(self, rng: ImageRNG) -> None:
        self.rng = rng

    def __getattr__(self, item: str) -> object:
        if item == "randn_like":
            return lambda _x: self.rng.next()
        return getattr(torch, item)


class CFGDenoiser:
    """``sd_samplers_cfg_denoiser.CFGDenoiser`` for plain prompts (one cond per image, equal lengths)."""

    def __init__(self, inner: object, cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> None:
        self.inner, self.cond, self.uncond, self.scale = inner, cond, uncond, scale
        self.step = 0

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, **_: object) -> torch.Tensor:
        batch = len(x)
        x_in = torch.cat([torch.stack([x[i]]) for i in range(batch)] + [x])
        sigma_in = torch.cat([torch.stack([sigma[i]]) for i in range(batch)] + [sigma])
        x_out = self.inner(x_in, sigma_in, cond=torch.cat([self.cond, self.uncond]))
        denoised_uncond = x_out[-batch:]
        denoised = torch.clone(denoised_uncond)
        for i in range(batch):
            denoised[i] += (x_out[i] - denoised_uncond[i]) * (1.0 * self.scale)
        self.step += 1
        return denoised


# --- sd_samplers_kdiffusion.samplers_k_diffusion (+ Restart, LCM): label → (function, options) ---------------
SAMPLERS = {
    "DPM++ 2M": ("sample_dpmpp_2m", {"scheduler": "karras"}),
    "DPM++ SDE": ("sample_dpmpp_sde", {"scheduler": "karras", "second_order": True, "brownian_noise": True}),
    "DPM++ 2M SDE": ("sample_dpmpp_2m_sde", {"scheduler": "exponential", "brownian_noise": True}),
    "DPM++ 2M SDE Heun": ("sample_dpmpp_2m_sde", {"scheduler": "exponential", "brownian_noise": True,
                                                  "solver_type": "heun"}),
    "DPM++ 2S a": ("sample_dpmpp_2s_ancestral", {"scheduler": "karras", "second_order": True}),
    "DPM++ 3M SDE": ("sample_dpmpp_3m_sde", {"scheduler": "exponential", "discard_next_to_last_sigma": True,
                                             "brownian_noise": True}),
    "Euler a": ("sample_euler_ancestral", {}),
    "Euler": ("sample_euler", {}),
    "LMS": ("sample_lms", {}),
    "Heun": ("sample_heun", {"second_order": True}),
    "DPM2": ("sample_dpm_2", {"scheduler": "karras", "discard_next_to_last_sigma": True, "second_order": True}),
    "DPM2 a": ("sample_dpm_2_ancestral", {"scheduler": "karras", "discard_next_to_last_sigma": True,
                                          "second_order": True}),
    "Restart": ("restart", {"scheduler": "karras", "second_order": True}),
    "LCM": ("lcm", {}),
}
TIMESTEP_SAMPLERS = ("DDIM", "PLMS", "UniPC")
_EXTRA_PARAMS = {"sample_euler", "sample_heun", "sample_dpm_2"}  # s_churn, s_tmin, s_tmax, s_noise


# --- sd_schedulers.py --------------------------------------------------------------------------------------
def _uniform(n, sigma_min, sigma_max, inner_model, device):
    return inner_model.get_sigmas(n).to(device)


def _sgm_uniform(n, sigma_min, sigma_max, inner_model, device):
    start = inner_model.sigma_to_t(torch.tensor(sigma_max))
    end = inner_model.sigma_to_t(torch.tensor(sigma_min))
    sigs = [inner_model.t_to_sigma(ts) for ts in torch.linspace(start, end, n + 1)[:-1]]
    return torch.FloatTensor([*sigs, 0.0]).to(device)


def _align_your_steps(n, sigma_min, sigma_max, device, sdxl=False):
    def loglinear_interp(t_steps, num_steps):
        xs = np.linspace(0, 1, len(t_steps))
        ys = np.log(t_steps[::-1])
        return np.exp(np.interp(np.linspace(0, 1, num_steps), xs, ys))[::-1].copy()

    if sdxl:
        sigmas = [14.615, 6.315, 3.771, 2.181, 1.342, 0.862, 0.555, 0.380, 0.234, 0.113, 0.029]
    else:
        sigmas = [14.615, 6.475, 3.861, 2.697, 1.886, 1.396, 0.963, 0.652, 0.399, 0.152, 0.029]
    sigmas = np.append(loglinear_interp(sigmas, n), [0.0]) if n != len(sigmas) else [*sigmas, 0.0]
    return torch.FloatTensor(sigmas).to(device)


def _kl_optimal(n, sigma_min, sigma_max, device):
    alpha_min = torch.arctan(torch.tensor(sigma_min, device=device))
    alpha_max = torch.arctan(torch.tensor(sigma_max, device=device))
    step_indices = torch.arange(n + 1, device=device)
    return torch.tan(step_indices / n * alpha_min + (1.0 - step_indices / n) * alpha_max)


def _simple(n, sigma_min, sigma_max, inner_model, device):
    ss = len(inner_model.sigmas) / n
    return torch.FloatTensor([float(inner_model.sigmas[-(1 + int(x * ss))]) for x in range(n)] + [0.0]).to(device)


def _normal(n, sigma_min, sigma_max, inner_model, device):
    start = inner_model.sigma_to_t(torch.tensor(sigma_max))
    end = inner_model.sigma_to_t(torch.tensor(sigma_min))
    return torch.FloatTensor([inner_model.t_to_sigma(ts) for ts in torch.linspace(start, end, n)] + [0.0]).to(device)


def _ddim(n, sigma_min, sigma_max, inner_model, device):
    sigs, ss, x = [], max(len(inner_model.sigmas) // n, 1), 1
    while x < len(inner_model.sigmas):
        sigs += [float(inner_model.sigmas[x])]
        x += ss
    return torch.FloatTensor([*sigs[::-1], 0.0]).to(device)


def _beta(n, sigma_min, sigma_max, inner_model, device):
    from scipy import stats

    timesteps = [stats.beta.ppf(x, 0.6, 0.6) for x in 1 - np.linspace(0, 1, n)]  # opts.beta_dist_alpha/beta
    return torch.FloatTensor([sigma_min + (x * (sigma_max - sigma_min)) for x in timesteps] + [0.0]).to(device)


def schedulers() -> dict[str, tuple[object, bool]]:
    """label → (function, needs the inner model)."""
    sampling = kdiffusion().sampling
    return {"Uniform": (_uniform, True), "Karras": (sampling.get_sigmas_karras, False),
            "Exponential": (sampling.get_sigmas_exponential, False),
            "Polyexponential": (sampling.get_sigmas_polyexponential, False),
            "SGM Uniform": (_sgm_uniform, True), "KL Optimal": (_kl_optimal, False),
            "Align Your Steps": (_align_your_steps, False), "Simple": (_simple, True),
            "Normal": (_normal, True), "DDIM": (_ddim, True), "Beta": (_beta, True)}


_DEFAULT_SCHEDULE = {"karras": "Karras", "exponential": "Exponential"}


def get_sigmas(sampler: str, schedule: str, steps: int, model_wrap: object, sdxl: bool = False) -> torch.Tensor:
    """``KDiffusionSampler.get_sigmas`` (no overrides set)."""
    options = SAMPLERS[sampler][1]
    discard = options.get("discard_next_to_last_sigma", False)
    steps += 1 if discard else 0
    if schedule == "Automatic":
        schedule = _DEFAULT_SCHEDULE.get(options.get("scheduler"))
    sigma_min, sigma_max = model_wrap.sigmas[0].item(), model_wrap.sigmas[-1].item()
    if schedule is None:
        sigmas = model_wrap.get_sigmas(steps)
    else:
        function, needs_model = schedulers()[schedule]
        kwargs = {"sigma_min": sigma_min, "sigma_max": sigma_max}
        if needs_model:
            kwargs["inner_model"] = model_wrap
        if schedule == "Align Your Steps":
            kwargs["sdxl"] = sdxl  # A1111 reads shared.sd_model.is_sdxl
        sigmas = function(n=steps, **kwargs, device="cpu")
    if discard:
        sigmas = torch.cat([sigmas[:-2], sigmas[-1:]])
    return sigmas.cpu()


def model_wrap(model: LdmModel, sampler: str) -> object:
    external = kdiffusion().external
    if sampler == "LCM":
        return LCMCompVisDenoiser(model)
    denoiser = external.CompVisVDenoiser if model.parameterization == "v" else external.CompVisDenoiser
    return denoiser(model, quantize=False)  # opts.enable_quantization defaults to False


def _function(name: str) -> object:
    funcname = SAMPLERS[name][0]
    return {"restart": restart_sampler, "lcm": sample_lcm}.get(funcname) or getattr(kdiffusion().sampling, funcname)


def _run(name: str, wrap: object, model: LdmModel, x: torch.Tensor, sigmas: torch.Tensor, noise_sigmas: torch.Tensor,
         rng: ImageRNG, seeds: list[int], cond: torch.Tensor, uncond: torch.Tensor, cfg: float) -> torch.Tensor:
    sampling = kdiffusion().sampling
    func, options = _function(name), SAMPLERS[name][1]
    sampling.torch = TorchHijack(rng)  # Sampler.initialize
    sampling.to_d = lambda x, sigma, denoised: (x - denoised) / sigma  # sd_schedulers' replacement
    parameters = inspect.signature(func).parameters
    kwargs: dict[str, object] = {}
    if SAMPLERS[name][0] in _EXTRA_PARAMS:
        kwargs |= {"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": float("inf"), "s_noise": 1.0}
    if "eta" in parameters:
        kwargs["eta"] = 1.0  # opts.eta_ancestral
    if options.get("brownian_noise"):
        sigma_min, sigma_max = noise_sigmas[noise_sigmas > 0].min(), noise_sigmas.max()
        kwargs["noise_sampler"] = sampling.BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seeds)
    if options.get("solver_type") == "heun":
        kwargs["solver_type"] = "heun"
    denoiser = CFGDenoiser(wrap, cond, uncond, cfg)
    return func(denoiser, x, sigmas=sigmas, extra_args={}, disable=True, **kwargs)


def kdiffusion_txt2img(name: str, schedule: str, model: LdmModel, steps: int, seeds: list[int],
                       shape: tuple[int, ...], cond: torch.Tensor, uncond: torch.Tensor, cfg: float) -> torch.Tensor:
    """``KDiffusionSampler.sample`` after ``x = rng.next()``."""
    wrap = model_wrap(model, name)
    rng = ImageRNG(shape, seeds)
    x = rng.next()
    sigmas = get_sigmas(name, schedule, steps, wrap)
    return _run(name, wrap, model, x * sigmas[0], sigmas, sigmas, rng, seeds, cond, uncond, cfg)


def kdiffusion_img2img(name: str, schedule: str, model: LdmModel, x: torch.Tensor, steps: int, denoise: float,
                       seeds: list[int], cond: torch.Tensor, uncond: torch.Tensor, cfg: float) -> torch.Tensor:
    """``sample_hr_pass``: a new ImageRNG, ``noise = rng.next()``, then ``sample_img2img(steps=…)``."""
    rng = ImageRNG(tuple(x.shape[1:]), seeds)
    noise = rng.next()
    total, t_enc = int(steps / min(denoise, 0.999)), steps - 1  # setup_img2img_steps with steps given
    wrap = model_wrap(model, name)
    sigmas = get_sigmas(name, schedule, total, wrap)
    sigma_sched = sigmas[total - t_enc - 1:]
    xi = x + noise * sigma_sched[0]
    return _run(name, wrap, model, xi, sigma_sched, sigmas, rng, seeds, cond, uncond, cfg)


# --- sd_samplers_extra.restart_sampler ----------------------------------------------------------------------
@torch.no_grad()
def restart_sampler(model, x, sigmas, extra_args=None, callback=None, disable=None, s_noise=1.0):
    sampling = kdiffusion().sampling
    s_in = x.new_ones([x.shape[0]])

    def heun_step(x, old_sigma, new_sigma):
        denoised = model(x, old_sigma * s_in)
        d = sampling.to_d(x, old_sigma, denoised)
        dt = new_sigma - old_sigma
        if new_sigma == 0:
            return x + d * dt
        x_2 = x + d * dt
        d_2 = sampling.to_d(x_2, new_sigma, model(x_2, new_sigma * s_in))
        return x + (d + d_2) / 2 * dt

    steps = sigmas.shape[0] - 1
    restart_list: dict = {}
    if steps >= 20:
        restart_steps, restart_times = 9, 1
        if steps >= 36:
            restart_steps, restart_times = steps // 4, 2
        sigmas = sampling.get_sigmas_karras(steps - restart_steps * restart_times, sigmas[-2].item(),
                                            sigmas[0].item(), device=sigmas.device)
        restart_list = {0.1: [restart_steps + 1, restart_times, 2]}
    restart_list = {int(torch.argmin(abs(sigmas - key), dim=0)): value for key, value in restart_list.items()}
    step_list = []
    for i in range(len(sigmas) - 1):
        step_list.append((sigmas[i], sigmas[i + 1]))
        if i + 1 in restart_list:
            restart_steps, restart_times, restart_max = restart_list[i + 1]
            min_idx, max_idx = i + 1, int(torch.argmin(abs(sigmas - restart_max), dim=0))
            if max_idx < min_idx:
                sigma_restart = sampling.get_sigmas_karras(restart_steps, sigmas[min_idx].item(),
                                                           sigmas[max_idx].item(), device=sigmas.device)[:-1]
                while restart_times > 0:
                    restart_times -= 1
                    step_list.extend(pairwise(sigma_restart))
    last_sigma = None
    for old_sigma, new_sigma in step_list:
        if last_sigma is None:
            last_sigma = old_sigma
        elif last_sigma < old_sigma:
            x = x + sampling.torch.randn_like(x) * s_noise * (old_sigma**2 - last_sigma**2) ** 0.5
        x = heun_step(x, old_sigma, new_sigma)
        last_sigma = new_sigma
    return x


# --- sd_samplers_lcm ----------------------------------------------------------------------------------------
class LCMCompVisDenoiser:
    """Built on k-diffusion's ``DiscreteEpsDDPMDenoiser`` with A1111's overrides."""

    def __new__(cls, model: LdmModel):
        external, sampling, utils = kdiffusion().external, kdiffusion().sampling, sys.modules[f"{_PACKAGE}.utils"]

        class Denoiser(external.DiscreteEpsDDPMDenoiser):
            def __init__(self, model):
                timesteps, original_timesteps = 1000, 50
                self.skip_steps = timesteps // original_timesteps
                valid = torch.zeros(original_timesteps, dtype=torch.float32)
                for x in range(original_timesteps):
                    valid[original_timesteps - 1 - x] = model.alphas_cumprod[timesteps - 1 - x * self.skip_steps]
                super().__init__(model, valid, quantize=None)

            def get_sigmas(self, n=None):
                start, end = self.sigma_to_t(self.sigma_max), self.sigma_to_t(self.sigma_min)
                return sampling.append_zero(self.t_to_sigma(torch.linspace(start, end, n)))

            def sigma_to_t(self, sigma, quantize=None):
                dists = sigma.log() - self.log_sigmas[:, None]
                return dists.abs().argmin(dim=0).view(sigma.shape) * self.skip_steps + (self.skip_steps - 1)

            def t_to_sigma(self, timestep):
                t = torch.clamp(((timestep - (self.skip_steps - 1)) / self.skip_steps).float(), min=0,
                                max=(len(self.sigmas) - 1))
                return super().t_to_sigma(t)

            def get_eps(self, *args, **kwargs):
                return self.inner_model.apply_model(*args, **kwargs)

            def forward(self, input, sigma, **kwargs):
                c_out, c_in = [utils.append_dims(x, input.ndim) for x in self.get_scalings(sigma)]
                eps = self.get_eps(input * c_in, self.sigma_to_t(sigma), **kwargs)
                output = input + eps * c_out
                scaled_timestep = utils.append_dims(self.sigma_to_t(sigma), output.ndim) * 10.0
                c_skip = 0.5**2 / (scaled_timestep**2 + 0.5**2)
                c_out = scaled_timestep / (scaled_timestep**2 + 0.5**2) ** 0.5
                return c_out * output + c_skip * input

        return Denoiser(model)


@torch.no_grad()
def sample_lcm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None):
    noise_sampler = kdiffusion().sampling.default_noise_sampler(x) if noise_sampler is None else noise_sampler
    s_in = x.new_ones([x.shape[0]])
    for i in range(len(sigmas) - 1):
        x = model(x, sigmas[i] * s_in)
        if sigmas[i + 1] > 0:
            x += sigmas[i + 1] * noise_sampler(sigmas[i], sigmas[i + 1])
    return x


# --- sd_samplers_timesteps(_impl): DDIM, PLMS, UniPC --------------------------------------------------------
class TimestepsDenoiser:
    """``CompVisTimestepsDenoiser`` / ``CompVisTimestepsVDenoiser``."""

    def __init__(self, model: LdmModel) -> None:
        self.model = model

    def __call__(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        output = self.model.apply_model(x, t, cond)
        if self.model.parameterization != "v":
            return output
        index = t.to(torch.int)
        return (self.model.sqrt_alphas_cumprod[index, None, None, None] * output
                + self.model.sqrt_one_minus_alphas_cumprod[index, None, None, None] * x)


def get_timesteps(steps: int) -> torch.Tensor:
    return torch.clip(torch.asarray(list(range(0, 1000, 1000 // steps))) + 1, 0, 999)


@torch.no_grad()
def ddim(model, x, timesteps, alphas_cumprod, eta=0.0):
    alphas = alphas_cumprod[timesteps]
    alphas_prev = alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    sqrt_one_minus_alphas = torch.sqrt(1 - alphas)
    previous, current = alphas_prev.numpy(), alphas.numpy()
    sigmas = eta * np.sqrt((1 - previous) / (1 - current) * (1 - current / previous))
    s_in, s_x = x.new_ones(x.shape[0]), x.new_ones((x.shape[0], 1, 1, 1))
    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        e_t = model(x, timesteps[index].item() * s_in)
        a_t, a_prev = alphas[index].item() * s_x, alphas_prev[index].item() * s_x
        sigma_t, sqrt_one_minus_at = sigmas[index].item() * s_x, sqrt_one_minus_alphas[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        dir_xt = (1.0 - a_prev - sigma_t**2).sqrt() * e_t
        noise = sigma_t * kdiffusion().sampling.torch.randn_like(x)
        x = a_prev.sqrt() * pred_x0 + dir_xt + noise
    return x


@torch.no_grad()
def plms(model, x, timesteps, alphas_cumprod):
    alphas = alphas_cumprod[timesteps]
    alphas_prev = alphas_cumprod[torch.nn.functional.pad(timesteps[:-1], pad=(1, 0))].to(torch.float64)
    sqrt_one_minus_alphas = torch.sqrt(1 - alphas)
    s_in, s_x = x.new_ones(x.shape[0]), x.new_ones((x.shape[0], 1, 1, 1))
    old_eps: list[torch.Tensor] = []

    def get_x_prev_and_pred_x0(e_t, index):
        a_t, a_prev = alphas[index].item() * s_x, alphas_prev[index].item() * s_x
        sqrt_one_minus_at = sqrt_one_minus_alphas[index].item() * s_x
        pred_x0 = (x - sqrt_one_minus_at * e_t) / a_t.sqrt()
        return a_prev.sqrt() * pred_x0 + (1.0 - a_prev).sqrt() * e_t

    for i in range(len(timesteps) - 1):
        index = len(timesteps) - 1 - i
        ts, t_next = timesteps[index].item() * s_in, timesteps[max(index - 1, 0)].item() * s_in
        e_t = model(x, ts)
        if len(old_eps) == 0:
            x_prev = get_x_prev_and_pred_x0(e_t, index)
            e_t_prime = (e_t + model(x_prev, t_next)) / 2
        elif len(old_eps) == 1:
            e_t_prime = (3 * e_t - old_eps[-1]) / 2
        elif len(old_eps) == 2:
            e_t_prime = (23 * e_t - 16 * old_eps[-1] + 5 * old_eps[-2]) / 12
        else:
            e_t_prime = (55 * e_t - 59 * old_eps[-1] + 37 * old_eps[-2] - 9 * old_eps[-3]) / 24
        x_prev = get_x_prev_and_pred_x0(e_t_prime, index)
        old_eps.append(e_t)
        if len(old_eps) >= 4:
            old_eps.pop(0)
        x = x_prev
    return x


def _interpolate_fn(x, xp, yp):
    """uni_pc.interpolate_fn: piecewise linear through (xp, yp), extended linearly beyond the ends."""
    n, k = x.shape[0], xp.shape[1]
    all_x = torch.cat([x.unsqueeze(2), xp.unsqueeze(0).repeat((n, 1, 1))], dim=2)
    sorted_all_x, x_indices = torch.sort(all_x, dim=2)
    x_idx = torch.argmin(x_indices, dim=2)
    cand_start_idx = x_idx - 1
    start_idx = torch.where(torch.eq(x_idx, 0), torch.tensor(1),
                            torch.where(torch.eq(x_idx, k), torch.tensor(k - 2), cand_start_idx))
    end_idx = torch.where(torch.eq(start_idx, cand_start_idx), start_idx + 2, start_idx + 1)
    start_x = torch.gather(sorted_all_x, dim=2, index=start_idx.unsqueeze(2)).squeeze(2)
    end_x = torch.gather(sorted_all_x, dim=2, index=end_idx.unsqueeze(2)).squeeze(2)
    start_idx2 = torch.where(torch.eq(x_idx, 0), torch.tensor(0),
                             torch.where(torch.eq(x_idx, k), torch.tensor(k - 2), cand_start_idx))
    y_positions = yp.unsqueeze(0).expand(n, -1, -1)
    start_y = torch.gather(y_positions, dim=2, index=start_idx2.unsqueeze(2)).squeeze(2)
    end_y = torch.gather(y_positions, dim=2, index=(start_idx2 + 1).unsqueeze(2)).squeeze(2)
    return start_y + (x - start_x) * (end_y - start_y) / (end_x - start_x)


class NoiseScheduleVP:
    """uni_pc.NoiseScheduleVP('discrete', alphas_cumprod=…)."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        log_alphas = 0.5 * torch.log(alphas_cumprod)
        self.total_N = len(log_alphas)
        self.t_array = torch.linspace(0.0, 1.0, self.total_N + 1)[1:].reshape((1, -1))
        self.log_alpha_array = log_alphas.reshape((1, -1))

    def marginal_log_mean_coeff(self, t):
        return _interpolate_fn(t.reshape((-1, 1)), self.t_array, self.log_alpha_array).reshape(-1)

    def marginal_alpha(self, t):
        return torch.exp(self.marginal_log_mean_coeff(t))

    def marginal_std(self, t):
        return torch.sqrt(1.0 - torch.exp(2.0 * self.marginal_log_mean_coeff(t)))

    def marginal_lambda(self, t):
        log_mean_coeff = self.marginal_log_mean_coeff(t)
        return log_mean_coeff - 0.5 * torch.log(1.0 - torch.exp(2.0 * log_mean_coeff))


@torch.no_grad()
def unipc(model, x, timesteps, alphas_cumprod, is_img2img=False, variant="bh1", order=3):
    """``sd_samplers_timesteps_impl.unipc`` → ``UniPC.sample(method='multistep', skip_type='time_uniform',
    lower_order_final=True)`` with ``UniPCCFG``'s model and predict_x0 = True."""
    ns = NoiseScheduleVP(alphas_cumprod)

    def model_fn(x, t):  # data_prediction_fn over UniPCCFG.model
        noise = model(x, (t - 1.0 / ns.total_N) * 1000.0)
        return (x - ns.marginal_std(t)[:, None, None, None] * noise) / ns.marginal_alpha(t)[:, None, None, None]

    def update(x, model_prev_list, t_prev_list, t, order, use_corrector=True):
        t_prev_0 = t_prev_list[-1]
        lambda_prev_0, lambda_t = ns.marginal_lambda(t_prev_0), ns.marginal_lambda(t)
        model_prev_0 = model_prev_list[-1]
        sigma_prev_0, sigma_t = ns.marginal_std(t_prev_0), ns.marginal_std(t)
        alpha_t = torch.exp(ns.marginal_log_mean_coeff(t))
        h = lambda_t - lambda_prev_0
        rks, d1s = [], []
        for i in range(1, order):
            rk = ((ns.marginal_lambda(t_prev_list[-(i + 1)]) - lambda_prev_0) / h)[0]
            rks.append(rk)
            d1s.append((model_prev_list[-(i + 1)] - model_prev_0) / rk)
        rks.append(1.0)
        rks = torch.tensor(rks)
        hh = -h[0]
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        factorial_i = 1
        b_h = hh if variant == "bh1" else torch.expm1(hh)
        r, b = [], []
        for i in range(1, order + 1):
            r.append(torch.pow(rks, i - 1))
            b.append(h_phi_k * factorial_i / b_h)
            factorial_i *= i + 1
            h_phi_k = h_phi_k / hh - 1 / factorial_i
        r, b = torch.stack(r), torch.tensor(b)
        if len(d1s) > 0:
            d1s = torch.stack(d1s, dim=1)
            rhos_p = torch.tensor([0.5]) if order == 2 else torch.linalg.solve(r[:-1, :-1], b[:-1])
            pred_res = torch.einsum("k,bkchw->bchw", rhos_p, d1s)
        else:
            d1s, pred_res = None, 0
        rhos_c = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(r, b)
        x_t_ = ((sigma_t / sigma_prev_0)[:, None, None, None] * x
                - (alpha_t * h_phi_1)[:, None, None, None] * model_prev_0)
        x_t = x_t_ - (alpha_t * b_h)[:, None, None, None] * pred_res
        model_t = None
        if use_corrector:
            model_t = model_fn(x_t, t)
            corr_res = torch.einsum("k,bkchw->bchw", rhos_c[:-1], d1s) if d1s is not None else 0
            x_t = x_t_ - (alpha_t * b_h)[:, None, None, None] * (corr_res + rhos_c[-1] * (model_t - model_prev_0))
        return x_t, model_t

    steps = len(timesteps)
    t_0 = 1.0 / ns.total_N
    t_T = timesteps[-1] / 1000 + 1 / 1000 if is_img2img else 1.0
    times = torch.linspace(t_T, t_0, steps + 1)
    vec_t = times[0].expand(x.shape[0])
    model_prev_list, t_prev_list = [model_fn(x, vec_t)], [vec_t]
    for init_order in range(1, order):
        vec_t = times[init_order].expand(x.shape[0])
        x, model_x = update(x, model_prev_list, t_prev_list, vec_t, init_order)
        model_prev_list.append(model_x)
        t_prev_list.append(vec_t)
    for step in range(order, steps + 1):
        vec_t = times[step].expand(x.shape[0])
        x, model_x = update(x, model_prev_list, t_prev_list, vec_t, min(order, steps + 1 - step),
                            use_corrector=step != steps)
        for i in range(order - 1):
            t_prev_list[i], model_prev_list[i] = t_prev_list[i + 1], model_prev_list[i + 1]
        t_prev_list[-1] = vec_t
        if step < steps:
            model_prev_list[-1] = model_x if model_x is not None else model_fn(x, vec_t)
    return x


_TIMESTEP_FUNCTIONS = {"DDIM": ddim, "PLMS": plms, "UniPC": unipc}


class _TimestepCFG(CFGDenoiser):
    def __call__(self, x: torch.Tensor, t: torch.Tensor, **_: object) -> torch.Tensor:
        return super().__call__(x, t)


def timesteps_txt2img(name: str, model: LdmModel, steps: int, seeds: list[int], shape: tuple[int, ...],
                      cond: torch.Tensor, uncond: torch.Tensor, cfg: float) -> torch.Tensor:
    """``CompVisSampler.sample`` after ``x = rng.next()``."""
    rng = ImageRNG(shape, seeds)
    x = rng.next()
    kdiffusion().sampling.torch = TorchHijack(rng)
    denoiser = _TimestepCFG(lambda x, t, cond: TimestepsDenoiser(model)(x, t, cond), cond, uncond, cfg)
    return _TIMESTEP_FUNCTIONS[name](denoiser, x, get_timesteps(steps), model.alphas_cumprod)


def timesteps_img2img(name: str, model: LdmModel, x: torch.Tensor, steps: int, denoise: float, seeds: list[int],
                      cond: torch.Tensor, uncond: torch.Tensor, cfg: float) -> torch.Tensor:
    """``CompVisSampler.sample_img2img`` after the hires pass's new ``noise = rng.next()``."""
    rng = ImageRNG(tuple(x.shape[1:]), seeds)
    noise = rng.next()
    kdiffusion().sampling.torch = TorchHijack(rng)
    total, t_enc = int(steps / min(denoise, 0.999)), steps - 1
    timesteps = get_timesteps(total)
    alpha = model.alphas_cumprod[timesteps[t_enc]]
    xi = x * torch.sqrt(alpha) + noise * torch.sqrt(1 - alpha)
    denoiser = _TimestepCFG(lambda x, t, cond: TimestepsDenoiser(model)(x, t, cond), cond, uncond, cfg)
    function = _TIMESTEP_FUNCTIONS[name]
    extra = {"is_img2img": True} if name == "UniPC" else {}
    return function(denoiser, xi, timesteps[:t_enc], model.alphas_cumprod, **extra)

