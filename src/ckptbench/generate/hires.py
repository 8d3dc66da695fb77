"""A1111's hires fix: first pass at the base size, upscale, then img2img at the larger size.

Faithful to A1111 (``processing.py`` ``sample_hr_pass`` and ``setup_img2img_steps``):

* "Latent" upscalers interpolate the latents (bilinear, no antialiasing, for plain "Latent"); pixel
  upscalers decode, resize with PIL (or an ESRGAN-family model, then Lanczos to the exact size) and
  encode again;
* the second pass runs ``hires steps`` (0 = the base steps) denoising steps: A1111 builds a schedule of
  ``int(steps / min(denoise, 0.999))`` steps and runs its last ``steps`` (``samplers.run.img2img``);
* its noise comes from the same per-image seeds, as A1111 re-seeds its generator for the second pass;
* it uses the same loaded modules (UNet, VAE, text encoders, active LoRAs) as the first pass.
* Pixel upscalers encode the upscaled image with the VAE and take the mean of its latent distribution;
  A1111 samples that distribution with torch's global random state, which no seed reproduces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image

from ckptbench.errors import ModelFileError, SpecError
from ckptbench.generate.base import HiresSettings, target_size
from ckptbench.generate.conditioning import Conditioning
from ckptbench.generate.decode import decode_latents, first_decode_dtype, to_pil
from ckptbench.generate.decode import vae_dtype as _encoding_dtype
from ckptbench.generate.samplers import ResolvedSampler
from ckptbench.generate.samplers.run import SamplingModel, img2img
from ckptbench.hashing import DigestCache, sha256_file
from ckptbench.spec import LATENT_UPSCALERS, PICKLE_UPSCALER_SUFFIXES, HiresSpec

# spec name → (torch interpolate mode, antialias, the name A1111 writes in its infotext)
_LATENT_MODES = {
    "latent": ("bilinear", False, "Latent"),
    "latent-antialiased": ("bilinear", True, "Latent (antialiased)"),
    "latent-bicubic": ("bicubic", False, "Latent (bicubic)"),
    "latent-bicubic-antialiased": ("bicubic", True, "Latent (bicubic antialiased)"),
    "latent-nearest": ("nearest", False, "Latent (nearest)"),
    "latent-nearest-exact": ("nearest-exact", False, "Latent (nearest-exact)"),
}
_PIXEL_MODES = {"lanczos": (Image.Resampling.LANCZOS, "Lanczos"), "nearest": (Image.Resampling.NEAREST, "Nearest")}
assert set(_LATENT_MODES) == set(LATENT_UPSCALERS)


def hires_settings(spec: HiresSpec | None, cache: DigestCache | None = None) -> HiresSettings | None:
    """The planned hires fix; an upscaler model file is known by its content hash."""
    if spec is None or not spec.enabled:
        return None
    digest = None
    if spec.upscaler_is_file:
        path = Path(spec.upscaler)
        if path.suffix.lower() in PICKLE_UPSCALER_SUFFIXES and not spec.allow_pickle:
            raise SpecError(f"generation.hires.upscaler: {path} is a pickle file, which can run code when loaded; "
                            "convert it to .safetensors, or set generation.hires.allow_pickle = true to load it "
                            "with torch.load(weights_only=True).")
        digest = sha256_file(path, cache)
    return HiresSettings(scale=spec.scale, denoise=spec.denoise, steps=spec.steps, upscaler=spec.upscaler,
                         upscaler_sha256=digest, allow_pickle=spec.allow_pickle)


def second_pass_schedule(base_steps: int, hires: HiresSettings) -> tuple[int, int]:
    """(schedule length, steps run) of A1111's ``setup_img2img_steps`` for the second pass."""
    requested = hires.steps or base_steps
    return int(requested / min(hires.denoise, 0.999)), requested


def upscaler_label(hires: HiresSettings) -> str:
    """The upscaler's name as A1111 writes it in the infotext ("Latent", "Lanczos", a model's name)."""
    if hires.upscaler in _LATENT_MODES:
        return _LATENT_MODES[hires.upscaler][2]
    if hires.upscaler in _PIXEL_MODES:
        return _PIXEL_MODES[hires.upscaler][1]
    return Path(hires.upscaler).stem


def infotext_fields(base_steps: int, hires: HiresSettings) -> dict[str, object]:
    return {"Denoising strength": f"{hires.denoise:g}", "Hires upscale": f"{hires.scale:g}",
            "Hires steps": second_pass_schedule(base_steps, hires)[1], "Hires upscaler": upscaler_label(hires)}


@dataclass(frozen=True)
class HiresOutput:
    latents: torch.Tensor
    failures: tuple[str | None, ...]  # images already broken after the first pass (pixel upscalers decode it)
    warnings: tuple[str, ...] = ()


class HiresFix:
    """The second pass for one loaded pipeline; builds its upscaler models once."""

    def __init__(self, pipeline: Any, model: SamplingModel | None = None) -> None:
        self.pipeline = pipeline
        self._sampling_model = model  # the UNet families' (flow families sample in flow_sampling)
        self._models: dict[str, Any] = {}

    def run(self, latents: torch.Tensor, settings: Any, resolved: ResolvedSampler, conditioning: Conditioning,
            seeds: Sequence[int]) -> HiresOutput:
        upscaled = self.upscale(latents, settings)
        if self._sampling_model is None:  # built once per pipeline
            self._sampling_model = SamplingModel.of(self.pipeline)
        steps = second_pass_schedule(settings.steps, settings.hires)[1]
        output = img2img(self._sampling_model, resolved, conditioning, upscaled.latents, steps=steps,
                         denoise=settings.hires.denoise, cfg=settings.cfg, seeds=seeds)
        return HiresOutput(output, upscaled.failures, upscaled.warnings)

    def upscale(self, latents: torch.Tensor, settings: Any) -> HiresOutput:
        """The first pass's latents at the hires size: interpolated ("Latent" upscalers), or decoded, upscaled
        as pictures and encoded again; images already broken after the first pass are named in ``failures``."""
        hires: HiresSettings = settings.hires
        width, height = target_size(settings.width, settings.height, hires.scale)
        factor = self.pipeline.vae_scale_factor
        if hires.upscaler in _LATENT_MODES:
            mode, antialias, _ = _LATENT_MODES[hires.upscaler]
            start = F.interpolate(latents, size=(height // factor, width // factor), mode=mode, antialias=antialias)
            return HiresOutput(start, (None,) * len(latents))
        decoded = decode_latents(self.pipeline, latents)
        images = [self._upscale_pixels(pixels, width, height, hires) for pixels in decoded.pixels]
        warnings = (decoded.retry_warning,) if decoded.retry_warning else ()
        return HiresOutput(encode_images(self.pipeline, images), decoded.failures, warnings)

    def _upscale_pixels(self, pixels: torch.Tensor, width: int, height: int, hires: HiresSettings) -> Image.Image:
        image = to_pil(pixels)
        if hires.upscaler in _PIXEL_MODES:
            return image.resize((width, height), resample=_PIXEL_MODES[hires.upscaler][0])
        model = self._model(hires)
        # As A1111's Upscaler.upscale: apply the model up to three times until the target is reached, then
        # Lanczos to the exact size.
        for _ in range(3):
            if image.width >= width and image.height >= height:
                break
            before = image.size
            image = _run_model(model, image)
            if image.size == before:
                break
        if image.size != (width, height):
            image = image.resize((width, height), resample=Image.Resampling.LANCZOS)
        return image

    def _model(self, hires: HiresSettings) -> Any:
        if hires.upscaler not in self._models:
            device = self.pipeline.vae.device
            self._models[hires.upscaler] = load_upscaler(Path(hires.upscaler), hires.allow_pickle, device)
        return self._models[hires.upscaler]


def load_upscaler(path: Path, allow_pickle: bool, device: torch.device) -> Any:
    """An ESRGAN-family image upscaler through spandrel, from a state dict we read ourselves (safely)."""
    from spandrel import ImageModelDescriptor, ModelLoader

    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif path.suffix.lower() in PICKLE_UPSCALER_SUFFIXES and allow_pickle:
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise ModelFileError(f"upscaler {path} is neither .safetensors nor an allowed pickle file; convert it "
                                 "to .safetensors.")
        descriptor = ModelLoader().load_from_state_dict(state)
    except ModelFileError:
        raise
    except Exception as error:
        raise ModelFileError(f"upscaler {path} could not be loaded as an image upscaler ({type(error).__name__}: "
                             f"{str(error).strip()[:200]}); give an ESRGAN-family model file.") from None
    if not isinstance(descriptor, ImageModelDescriptor) or descriptor.scale < 2:
        raise ModelFileError(f"upscaler {path} is a {descriptor.architecture.name} model that does not upscale; "
                             "give an upscaling model (ESRGAN, Real-ESRGAN, SwinIR, …).")
    descriptor.to(device).eval()
    if device.type == "cuda" and descriptor.supports_half:
        descriptor.half()
    return descriptor


def encode_images(pipeline: Any, images: Sequence[Image.Image]) -> torch.Tensor:
    """The VAE's latents of RGB images (the mean of the latent distribution), scaled as the UNet sees them."""
    vae = pipeline.vae
    pixels = pipeline.image_processor.preprocess(list(images)).to(vae.device)
    with _encoding_dtype(vae, first_decode_dtype(pipeline)):
        latents = vae.encode(pixels.to(next(vae.parameters()).dtype)).latent_dist.mean.float()
    config = vae.config
    mean, std = getattr(config, "latents_mean", None), getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        shape = (1, len(mean), 1, 1)
        mean_t, std_t = (torch.tensor(v).view(shape).to(latents.device) for v in (mean, std))
        return (latents - mean_t) * config.scaling_factor / std_t
    # Flux and SD3 VAEs shift their latent space too (diffusers' img2img pipelines: (z − shift) · scale).
    return (latents - (getattr(config, "shift_factor", None) or 0.0)) * config.scaling_factor


def _run_model(model: Any, image: Image.Image) -> Image.Image:
    dtype = next(model.model.parameters()).dtype
    pixels = torch.from_numpy(_pil_array(image)).permute(2, 0, 1)[None].to(model.device, dtype)
    with torch.inference_mode():
        upscaled = model(pixels).float().clamp(0, 1)
    return to_pil(upscaled[0].cpu())


def _pil_array(image: Image.Image) -> Any:
    import numpy as np

    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
