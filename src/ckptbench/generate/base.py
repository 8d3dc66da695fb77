"""The generation contract: jobs in, images (or per-image failures) out, one checkpoint load per call."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from ckptbench.hashing import content_key
from ckptbench.suites import Case


@dataclass(frozen=True)
class HiresSettings:
    """A1111's hires fix as planned: the upscaler is a built-in name or a model file known by its sha256."""

    scale: float
    denoise: float
    steps: int  # 0 = the base steps
    upscaler: str  # a built-in name ("latent", "lanczos", ...) or the model file's path
    upscaler_sha256: str | None = None  # set when the upscaler is a model file
    allow_pickle: bool = False  # the spec allowed a pickle upscaler file (loaded with weights_only=True)

    def as_dict(self) -> dict[str, Any]:
        # The file's content, not its path, changes the pixels.
        upscaler = self.upscaler_sha256 or self.upscaler
        return {"scale": self.scale, "denoise": self.denoise, "steps": self.steps, "upscaler": upscaler}


def target_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The hires fix's size: A1111's ``int(size * scale)``, down to the VAE's 8-pixel grid as its latent upscale
    does."""
    return int(width * scale) // 8 * 8, int(height * scale) // 8 * 8


@dataclass(frozen=True)
class SamplingSettings:
    """Everything besides the case and the seed that changes the pixels."""

    sampler: str  # A1111 sampler label ("DPM++ 2M"); the plan stores names resolved by the sampler registry
    steps: int
    cfg: float
    width: int
    height: int
    dtype: str  # resolved: fp32 / fp16 / bf16
    hires: HiresSettings | None = None
    clip_skip: int = 1  # A1111 meaning: 1 = the text encoder's last layer
    distilled_cfg: float | None = None  # FLUX.1 [dev]'s guidance embedding (Forge's "Distilled CFG Scale")
    schedule: str | None = None  # A1111 "Schedule type" ("Karras"); None: the sampler's own (A1111 "Automatic")

    def as_dict(self) -> dict[str, Any]:
        settings: dict[str, Any] = {"sampler": self.sampler, "schedule": self.schedule, "steps": self.steps,
                                    "cfg": self.cfg, "width": self.width, "height": self.height,
                                    "dtype": self.dtype, "clip_skip": self.clip_skip}
        if self.distilled_cfg is not None:  # absent otherwise, so keys of the other families stay as they were
            settings["distilled_cfg"] = self.distilled_cfg
        if self.hires is not None:  # absent rather than null, so keys of images without hires fix stay as they were
            settings["hires"] = self.hires.as_dict()
        return settings


@dataclass(frozen=True, order=True)
class LoraUse:
    """A LoRA applied to an image: resolved to a file, known by its content, with the weights it is applied at.

    ``weight`` acts on the text encoders, ``unet_weight`` on the UNet (A1111's two multipliers; the same
    unless given); ``dyn`` keeps the first ``dyn`` ranks of plain LoRA layers (0: all).
    """

    sha256: str
    weight: float
    name: str  # as named in the prompt or suite (the file's stem, or an alias or hash), exactly as written
    path: Path
    unet_weight: float | None = None  # None given: set to ``weight`` (always a number once built)
    dyn: int = 0
    # What A1111 writes for the file in ``Lora hashes`` (the kohya addnet hash, 12 hex digits); not part of
    # what the LoRA computes, so not compared.
    short_hash: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "weight", float(self.weight))
        object.__setattr__(self, "unet_weight", self.weight if self.unet_weight is None else float(self.unet_weight))

    def as_dict(self) -> dict[str, Any]:
        # Absent unless they differ from the defaults, so keys of images with one weight and all ranks stay
        # as they were before separate weights existed.
        fields: dict[str, Any] = {"sha256": self.sha256, "weight": self.weight}
        if self.unet_weight != self.weight:
            fields["unet_weight"] = self.unet_weight
        if self.dyn:
            fields["dyn"] = self.dyn
        return fields


@dataclass(frozen=True)
class ImageJob:
    """One image to make: a checkpoint (by content), a case, a seed and the sampling settings."""

    checkpoint: str  # name in the spec
    checkpoint_sha256: str  # the weights file (or folder) digest, as recorded with the image
    case: Case
    seed: int
    prompt: str
    negative_prompt: str
    settings: SamplingSettings
    backend: str  # generator backend id and version: a new version may change pixels
    # Everything about the model that changes pixels: weights, external VAE, family, prediction type and
    # config (``ResolvedCheckpoint.identity``); defaults to the weights digest alone.
    checkpoint_identity: str = ""
    loras: tuple[LoraUse, ...] = ()  # sorted by file content; the prompt's <lora:…> tags and the suite's LoRAs
    # Textual-inversion embeddings the prompt or negative prompt names: (name, file sha256), sorted.
    embeddings: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return image_key(self.checkpoint_identity or self.checkpoint_sha256, self.prompt, self.negative_prompt,
                         self.seed, self.settings, self.backend, self.loras, self.embeddings)


def image_key(checkpoint_identity: str, prompt: str, negative_prompt: str, seed: int, settings: SamplingSettings,
              backend: str, loras: Sequence[LoraUse] = (), embeddings: tuple[tuple[str, str], ...] = ()) -> str:
    """Content key of an image: a hash of everything that changes its pixels (batch size does not)."""
    fields: dict[str, Any] = {
        "checkpoint": checkpoint_identity, "prompt": prompt, "negative_prompt": negative_prompt, "seed": seed,
        "settings": settings.as_dict(), "backend": backend, "embeddings": [list(pair) for pair in embeddings],
    }
    if loras:  # absent rather than empty, so keys of images without LoRAs stay as they were
        fields["loras"] = [lora.as_dict() for lora in loras]
    return content_key(fields)


@dataclass(frozen=True)
class GeneratedImage:
    job: ImageJob
    image: Image.Image
    infotext: str
    seconds: float
    warnings: tuple[str, ...] = ()  # e.g. a LoRA that matched only part of the model, a VAE decode redone in fp32


@dataclass(frozen=True)
class FailedImage:
    job: ImageJob
    error: str


class Generator(Protocol):
    backend: str

    def generate(self, checkpoint: Any, jobs: Sequence[ImageJob]) -> Iterator[GeneratedImage | FailedImage]:
        """Load ``checkpoint`` once and make every job's image, batched. Raises on a failed load."""
        ...
