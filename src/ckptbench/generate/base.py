"""The generation contract: jobs in, images (or per-image failures) out, one checkpoint load per call."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from PIL import Image

from ckptbench.hashing import content_key
from ckptbench.suites import Case


@dataclass(frozen=True)
class SamplingSettings:
    """Everything besides the case and the seed that changes the pixels."""

    sampler: str
    steps: int
    cfg: float
    width: int
    height: int
    dtype: str  # resolved: fp32 / fp16 / bf16
    clip_skip: int = 1  # A1111 meaning: 1 = the text encoder's last layer

    def as_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler, "steps": self.steps, "cfg": self.cfg, "width": self.width,
                "height": self.height, "dtype": self.dtype, "clip_skip": self.clip_skip}


@dataclass(frozen=True)
class ImageJob:
    """One image to make: a checkpoint (by content), a case, a seed and the sampling settings."""

    checkpoint: str  # name in the spec
    checkpoint_sha256: str
    case: Case
    seed: int
    prompt: str
    negative_prompt: str
    settings: SamplingSettings
    backend: str  # generator backend id and version: a new version may change pixels
    # Textual-inversion embeddings the prompt or negative prompt names: (name, file sha256), sorted.
    embeddings: tuple[tuple[str, str], ...] = ()

    @property
    def key(self) -> str:
        return image_key(self.checkpoint_sha256, self.prompt, self.negative_prompt, self.seed, self.settings,
                         self.backend, self.embeddings)


def image_key(checkpoint_sha256: str, prompt: str, negative_prompt: str, seed: int, settings: SamplingSettings,
              backend: str, embeddings: tuple[tuple[str, str], ...] = ()) -> str:
    """Content key of an image: a hash of everything that changes its pixels (batch size does not)."""
    return content_key({
        "checkpoint": checkpoint_sha256, "prompt": prompt, "negative_prompt": negative_prompt, "seed": seed,
        "settings": settings.as_dict(), "backend": backend, "embeddings": [list(pair) for pair in embeddings],
    })


@dataclass(frozen=True)
class GeneratedImage:
    job: ImageJob
    image: Image.Image
    infotext: str
    seconds: float


@dataclass(frozen=True)
class FailedImage:
    job: ImageJob
    error: str


class Generator(Protocol):
    backend: str

    def generate(self, checkpoint: Any, jobs: Sequence[ImageJob]) -> Iterator[GeneratedImage | FailedImage]:
        """Load ``checkpoint`` once and make every job's image, batched. Raises on a failed load."""
        ...
