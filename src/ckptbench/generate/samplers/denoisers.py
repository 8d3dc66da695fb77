"""The diffusers UNet as A1111 samples it: k-diffusion's CompVis denoiser, and A1111's CFG denoiser around it.

* ``model_alphas_cumprod``: the model's ᾱ as LDM computes it (float64 betas and product, kept in float32),
  with A1111's zero-terminal-SNR rescale when the scheduler config asks for it.
* ``CompVisDenoiser``: the VE view of a VP model (k-diffusion ``external.CompVisDenoiser`` /
  ``CompVisVDenoiser``): σ = √((1 − ᾱ)/ᾱ), the UNet sees ``x / √(σ² + 1)`` at the fractional timestep whose
  log σ interpolates the training table (``sigma_to_t``, not rounded, as A1111 with quantization off), and
  the result is the denoised latent.
* ``LcmDenoiser``: A1111's ``LCMCompVisDenoiser`` (50 of the 1000 timesteps, LCM's boundary scalings).
* ``TimestepDenoiser``: the noise prediction at an integer timestep, for DDIM/PLMS/UniPC
  (A1111 ``CompVisTimestepsDenoiser`` / ``CompVisTimestepsVDenoiser``).
* ``GuidedDenoiser``: A1111's ``CFGDenoiser``: conditioned and unconditioned rows in one UNet batch
  (conditioned first), ``uncond + (cond − uncond) · scale``, with the conditioning of each model call.

Sampler state stays in float32 whatever the UNet's dtype, as under A1111's autocast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

ModelInputs = Mapping[str, Any]  # the UNet's keyword arguments besides sample and timestep


def model_alphas_cumprod(config: Mapping[str, Any]) -> torch.Tensor:
    """ᾱ of the model's training schedule in float64 (LDM ``register_schedule``); callers keep float32 copies."""
    count = int(config.get("num_train_timesteps", 1000))
    kind = config.get("beta_schedule", "scaled_linear")
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    if config.get("trained_betas") is not None:
        betas = torch.tensor(config["trained_betas"], dtype=torch.float64)
    elif kind == "scaled_linear":  # LDM's "linear": linear in √β
        betas = torch.linspace(start**0.5, end**0.5, count, dtype=torch.float64) ** 2
    elif kind == "linear":
        betas = torch.linspace(start, end, count, dtype=torch.float64)
    else:
        raise ValueError(f"beta_schedule '{kind}' is not one ckptbench samples like A1111 (scaled_linear, linear)")
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    if config.get("rescale_betas_zero_snr"):
        alphas_cumprod = _zero_terminal_snr(alphas_cumprod.float()).double()
    return alphas_cumprod


def _zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """A1111's ``rescale_zero_terminal_snr_abar``: √ᾱ shifted to end at 0 and scaled to keep its start; the
    last ᾱ is then set to a tiny positive value so σ_max stays finite."""
    root = alphas_cumprod.sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    rescaled = root**2
    rescaled[-1] = 4.8973451890853435e-08
    return rescaled


class DiffusersUNet:
    """LDM's ``apply_model(x, t, cond)`` for a diffusers UNet: inputs cast to the UNet's dtype, output float32."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.unet = unet

    def __call__(self, x: torch.Tensor, t: torch.Tensor, inputs: ModelInputs) -> torch.Tensor:
        dtype = self.unet.dtype
        cast = {key: value.to(dtype) if torch.is_tensor(value) and value.is_floating_point() else value
                for key, value in inputs.items()}
        if "added_cond_kwargs" in cast:
            cast["added_cond_kwargs"] = {key: value.to(dtype) for key, value in cast["added_cond_kwargs"].items()}
        return self.unet(x.to(dtype), t, **cast, return_dict=False)[0].float()


def _as_batch(value: torch.Tensor, ndim: int) -> torch.Tensor:
    """A per-row scalar (rows,) shaped to broadcast over (rows, C, H, W)."""
    return value.reshape((*value.shape, *(1,) * (ndim - value.ndim)))


class DiscreteSchedule:
    """The model's 1000 training sigmas and the maps between σ and (fractional) timestep t."""

    def __init__(self, alphas_cumprod: torch.Tensor) -> None:
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def get_sigmas(self, n: int) -> torch.Tensor:
        """n sigmas at timesteps evenly spaced from the last to the first, then 0 (A1111's "Uniform")."""
        t = torch.linspace(len(self.sigmas) - 1, 0, n, device=self.sigmas.device)
        return _append_zero(self.t_to_sigma(t))

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        """The fractional timestep whose log σ, interpolated between its neighbours, is log ``sigma``."""
        log_sigma = sigma.log().to(self.log_sigmas.device)  # schedules ask with CPU scalars
        below = torch.searchsorted(self.log_sigmas, log_sigma.reshape(-1), right=True).reshape(sigma.shape)
        low = (below - 1).clamp(min=0, max=len(self.log_sigmas) - 2)
        high = low + 1
        low_log, high_log = self.log_sigmas[low], self.log_sigmas[high]
        weight = ((low_log - log_sigma) / (low_log - high_log)).clamp(0, 1)
        return ((1 - weight) * low + weight * high).to(sigma.device)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        t = t.float()
        fraction = t.frac()
        log_sigma = (1 - fraction) * self.log_sigmas[t.floor().long()] + fraction * self.log_sigmas[t.ceil().long()]
        return log_sigma.exp()


class CompVisDenoiser(DiscreteSchedule):
    """(noisy x, σ) → denoised x, from a model predicting ε or v at timestep ``sigma_to_t(σ)``."""

    def __init__(self, model: Callable[..., torch.Tensor], alphas_cumprod: torch.Tensor, prediction: str) -> None:
        super().__init__(alphas_cumprod)
        self.model = model
        self.prediction = prediction

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, inputs: ModelInputs) -> torch.Tensor:
        scaled = sigma**2 + 1.0
        c_in = _as_batch(1 / scaled**0.5, x.ndim)
        output = self.model(x * c_in, self.sigma_to_t(sigma), inputs)
        if self.prediction == "v_prediction":
            c_skip = _as_batch(1.0 / scaled, x.ndim)
            c_out = _as_batch(-sigma * 1.0 / scaled**0.5, x.ndim)
            return output * c_out + x * c_skip
        return x + output * _as_batch(-sigma, x.ndim)


class LcmDenoiser(CompVisDenoiser):
    """A1111's LCM denoiser: the 50 timesteps LCM was distilled on (every 20th, ending at 999), integer
    timesteps, and the consistency-model boundary scalings (σ_data = 0.5, timestep × 10)."""

    ORIGINAL_STEPS = 50

    def __init__(self, model: Callable[..., torch.Tensor], alphas_cumprod: torch.Tensor, prediction: str) -> None:
        self.skip = len(alphas_cumprod) // self.ORIGINAL_STEPS
        kept = alphas_cumprod[len(alphas_cumprod) - 1 - self.skip * torch.arange(self.ORIGINAL_STEPS)].flip(0)
        super().__init__(model, kept, prediction)

    def get_sigmas(self, n: int) -> torch.Tensor:
        start, end = self.sigma_to_t(self.sigma_max), self.sigma_to_t(self.sigma_min)
        return _append_zero(self.t_to_sigma(torch.linspace(start, end, n, device=self.sigmas.device)))

    def sigma_to_t(self, sigma: torch.Tensor) -> torch.Tensor:
        log_sigma = sigma.log().to(self.log_sigmas.device)
        nearest = (log_sigma - self.log_sigmas[:, None]).abs().argmin(dim=0).view(sigma.shape)
        return (nearest * self.skip + (self.skip - 1)).to(sigma.device)

    def t_to_sigma(self, t: torch.Tensor) -> torch.Tensor:
        index = ((t - (self.skip - 1)) / self.skip).float().clamp(min=0, max=len(self.sigmas) - 1)
        return super().t_to_sigma(index)

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor, inputs: ModelInputs) -> torch.Tensor:
        c_in = _as_batch(1 / (sigma**2 + 1.0) ** 0.5, x.ndim)
        timestep = self.sigma_to_t(sigma)
        denoised = x + self.model(x * c_in, timestep, inputs) * _as_batch(-sigma, x.ndim)
        scaled_t = _as_batch(timestep, x.ndim) * 10.0
        c_skip = 0.5**2 / (scaled_t**2 + 0.5**2)
        c_out = scaled_t / (scaled_t**2 + 0.5**2) ** 0.5
        return c_out * denoised + c_skip * x


class TimestepDenoiser:
    """(noisy x, timestep) → predicted noise ε (a v model's v turned into ε), for DDIM/PLMS/UniPC."""

    def __init__(self, model: Callable[..., torch.Tensor], alphas_cumprod: torch.Tensor, prediction: str) -> None:
        self.model = model
        self.alphas_cumprod = alphas_cumprod.float()
        self.prediction = prediction
        # LDM keeps √ᾱ and √(1 − ᾱ) computed in float64 (on the CPU: not every device has float64)
        double = alphas_cumprod.detach().cpu().double()
        self.sqrt_alphas = double.sqrt().float()
        self.sqrt_one_minus_alphas = (1 - double).sqrt().float()

    def __call__(self, x: torch.Tensor, t: torch.Tensor, inputs: ModelInputs) -> torch.Tensor:
        output = self.model(x, t, inputs)
        if self.prediction != "v_prediction":
            return output
        index = t.to(torch.int).cpu()
        root, root_rest = (_as_batch(v[index].to(x.device), x.ndim)
                           for v in (self.sqrt_alphas, self.sqrt_one_minus_alphas))
        return root * output + root_rest * x


class GuidedDenoiser:
    """Classifier-free guidance as A1111's ``CFGDenoiser``; ``inputs_at(call)`` gives the UNet inputs of model
    call ``call`` for the doubled batch [conditioned rows; unconditioned rows]."""

    def __init__(self, inner: Callable[..., torch.Tensor], inputs_at: Callable[[int], ModelInputs],
                 scale: float) -> None:
        self.inner = inner
        self.inputs_at = inputs_at
        self.scale = scale
        self.calls = 0  # model calls so far: what prompt editing counts

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        rows = x.shape[0]
        out = self.inner(torch.cat([x, x]), torch.cat([sigma, sigma]), self.inputs_at(self.calls))
        unconditioned = out[rows:]
        guided = unconditioned.clone()
        guided += (out[:rows] - unconditioned) * (1.0 * self.scale)
        self.calls += 1
        return guided


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])
