"""The scorer contract: what a scorer declares about itself and how it turns features into numbers."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from ckptbench.hashing import content_key
from ckptbench.spec import ScorerOptions


@dataclass(frozen=True)
class BackboneSpec:
    """A resolved feature extractor: its kind, files, weights digest and dtype (before loading)."""

    kind: str
    source: str
    folder: str
    weights: dict[str, str]  # file name → sha256
    dtype: str
    preprocessing: str

    @property
    def key(self) -> str:
        # By content: the same weights at another path are the same backbone.
        return content_key({"kind": self.kind, "weights": self.weights, "dtype": self.dtype,
                            "preprocessing": self.preprocessing})

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.source}"


@dataclass(frozen=True)
class ScorerInfo:
    id: str
    version: str
    backbone: str
    backbone_key: str
    weights: dict[str, str]  # every file whose values the score depends on → sha256
    higher_is_better: bool
    scale: str
    preprocessing: str
    dtype: str
    needs_prompt: bool
    description: str
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def weights_sha256(self) -> str:
        return content_key(self.weights)

    @property
    def key(self) -> str:
        return content_key({"id": self.id, "version": self.version, "backbone_key": self.backbone_key,
                            "weights": self.weights, "dtype": self.dtype, "extra": self.extra})

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "weights_sha256": self.weights_sha256, "key": self.key}


@dataclass
class FeatureBatch:
    """What a backbone computed for a batch of images, handed to every head that shares it."""

    image_embeds: torch.Tensor  # (N, D) projected, not normalised
    texts: list[str]
    text_embeds: torch.Tensor | None = None  # (N, D) when a head needs the prompt


class Scorer(ABC):
    """A head on a shared backbone. Subclasses document their reference definition in the docstring."""

    name: ClassVar[str]
    version: ClassVar[str]
    backbone_kind: ClassVar[str]
    default_model: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    scale: ClassVar[str]
    needs_prompt: ClassVar[bool] = False
    description: ClassVar[str]

    def __init__(self, options: ScorerOptions) -> None:
        self.options = options

    @property
    def model_source(self) -> str:
        return self.options.model or self.default_model

    def head_files(self) -> dict[str, str]:
        """Resolve and hash the head's own weight files (not the backbone's); none by default."""
        return {}

    def info(self, backbone: BackboneSpec) -> ScorerInfo:
        return ScorerInfo(
            id=self.name, version=self.version, backbone=backbone.id, backbone_key=backbone.key,
            weights={**{f"backbone/{k}": v for k, v in backbone.weights.items()}, **self.head_files()},
            higher_is_better=self.higher_is_better, scale=self.scale, preprocessing=backbone.preprocessing,
            dtype=backbone.dtype, needs_prompt=self.needs_prompt, description=self.description,
        )

    def text_for(self, prompt: str) -> str:
        """The text the score depends on besides the image ('' for image-only scorers)."""
        return ""

    def load(self, device: torch.device) -> None:  # noqa: B027 - most heads have nothing to load
        """Load head weights; called once, only when there is work."""

    @abstractmethod
    def score(self, batch: FeatureBatch) -> np.ndarray:
        """One finite float per image of the batch."""
