"""Latents → pixels with a check for broken images and one fp32 retry of the VAE.

Half-precision VAEs overflow on some latents (the SD1.x VAE in fp16 is the classic case) and return NaN or
all-black images. Those images are decoded again from the same latents with only the VAE upcast to fp32;
an image still broken after that is reported with its reason instead of being scored.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from PIL import Image

NAN_LATENTS = ("the denoised latents contain NaN or infinite values (the UNet overflowed; try dtype = 'bf16' "
               "or 'fp32')")
NAN_PIXELS = "the decoded image contains NaN or infinite values"
ALL_BLACK = "the decoded image is all black"
FLAT = "the decoded image is a single flat colour"


@dataclass(frozen=True)
class DecodedBatch:
    pixels: torch.Tensor  # (B, 3, H, W) float32 in [0, 1] on the CPU; broken images as they came out
    failures: tuple[str | None, ...]  # per image: why it is broken, or None
    retried: int  # images decoded a second time in fp32
    first_dtype: torch.dtype

    @property
    def retry_warning(self) -> str | None:
        if not self.retried:
            return None
        name = str(self.first_dtype).removeprefix("torch.")
        return f"the VAE gave broken images in {name}; those were decoded again in float32"


def broken_reason(pixels: torch.Tensor) -> str | None:
    """Why one decoded image (3, H, W, values in [0, 1]) is unusable, or None when it looks like an image."""
    if not bool(torch.isfinite(pixels).all()):
        return NAN_PIXELS
    levels = (pixels.clamp(0, 1) * 255).round()
    if float(levels.max()) <= 1:
        return ALL_BLACK
    channel_range = levels.amax(dim=(1, 2)) - levels.amin(dim=(1, 2))
    if float(channel_range.max()) <= 1:
        return FLAT
    return None


def decode_latents(pipeline: object, latents: torch.Tensor) -> DecodedBatch:
    """Decode a batch the way the pipeline would, then retry broken images once with the VAE in fp32."""
    vae = pipeline.vae  # type: ignore[attr-defined]
    first_dtype = first_decode_dtype(pipeline)
    latent_ok = [bool(torch.isfinite(latent).all()) for latent in latents]
    pixels = _decode(vae, latents, first_dtype)
    failures: list[str | None] = [broken_reason(image) if ok else NAN_LATENTS
                                  for image, ok in zip(pixels, latent_ok, strict=True)]
    retry = [index for index, failure in enumerate(failures) if failure and latent_ok[index]]
    if retry and first_dtype != torch.float32:
        again = _decode(vae, latents[retry], torch.float32)
        for index, image in zip(retry, again, strict=True):
            pixels[index] = image
            failures[index] = broken_reason(image)
    else:
        retry = []
    return DecodedBatch(pixels, tuple(failures), len(retry), first_dtype)


def first_decode_dtype(pipeline: object) -> torch.dtype:
    """The dtype of the first decode: fp32 when the pipeline upcasts from the start, else the VAE's own."""
    return torch.float32 if _upcasts_first(pipeline) else pipeline.vae.dtype  # type: ignore[attr-defined]


def to_pil(pixels: torch.Tensor) -> Image.Image:
    """An 8-bit RGB image of (3, H, W) pixels in [0, 1]; values outside are clamped, NaN become black."""
    array = (pixels.float().clamp(0, 1).nan_to_num(0.0) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(array)


def _upcasts_first(pipeline: object) -> bool:
    """Pipelines whose family decodes in fp32 from the start (SDXL when its VAE asks for it, ``force_upcast``)."""
    from ckptbench.models.families import all_families

    return any(family.decodes_in_fp32(pipeline) for family in all_families() if family.owns_pipeline(pipeline))


def _decode(vae: torch.nn.Module, latents: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    config = vae.config  # type: ignore[attr-defined]
    latents = latents.to(dtype)  # unscaled in the decode dtype, as the pipelines do
    mean = getattr(config, "latents_mean", None)
    std = getattr(config, "latents_std", None)
    if mean is not None and std is not None:
        shape = (1, len(mean), 1, 1)
        mean_t = torch.tensor(mean).view(shape).to(latents.device, dtype)
        std_t = torch.tensor(std).view(shape).to(latents.device, dtype)
        latents = latents * std_t / config.scaling_factor + mean_t
    else:
        # Flux and SD3 VAEs also shift their latent space (``shift_factor``); the SD VAEs do not.
        latents = latents / config.scaling_factor + (getattr(config, "shift_factor", None) or 0.0)
    with _vae_dtype(vae, dtype):
        sample = vae.decode(latents, return_dict=False)[0]  # type: ignore[attr-defined]
    # As diffusers' image processor does; NaN survive the clamp, so the check above still sees them.
    return (sample.float() / 2 + 0.5).clamp(0, 1).cpu()


@contextlib.contextmanager
def _vae_dtype(vae: torch.nn.Module, dtype: torch.dtype) -> Iterator[None]:
    original = next(vae.parameters()).dtype
    if original == dtype:
        yield
        return
    vae.to(dtype)
    try:
        yield
    finally:
        vae.to(original)  # fp32 → fp16/bf16 restores the original weights exactly
