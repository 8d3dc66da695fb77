"""The scorer contract: what a scorer declares about itself and how it turns features into numbers.

Two levels of scorer share one identity (``ScorerInfo``) and one backbone mechanism:

* ``ImageScorer`` answers one number per image (and per prompt or reference set, its *context*);
* ``SetScorer`` answers one number per set of images (a checkpoint's images of one suite) against a
  reference image folder: distribution distances such as KID, FID and CMMD.

A scorer never loads images or runs a network itself: it names a backbone (a shared feature extractor)
and the features it needs from it; the engine computes each feature once per image per backbone.
*Joint* scorers (``joint = True``: ImageReward, VQAScore) are models that read image and prompt together,
so nothing per image can be computed apart from the prompt: the engine hands them the decoded images, the
texts and their loaded backbone, whose ``score_pairs`` does the work.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image

from ckptbench.hashing import content_key
from ckptbench.metrics.registry import IDENTITY_FIELDS, SCORERS, ScorerEntry
from ckptbench.spec import ScorerOptions


@dataclass(frozen=True)
class BackboneRequest:
    """What a scorer asks of a backbone kind before anything is resolved: sources as the user gave them."""

    kind: str
    model: str  # hub id, local folder or file, or a built-in architecture name
    head: str | None = None  # a weights file some kinds load into the model (HPS checkpoints)
    processor: str | None = None  # where preprocessing/tokenizer files come from when the model lacks them
    allow_pickle: bool = False  # the user's opt-in for pickle weight files (read with weights_only=True)


@dataclass(frozen=True)
class BackboneSpec:
    """A resolved feature extractor: its kind, files, weights digest and dtype (before loading)."""

    kind: str
    source: str  # as the user named it
    location: str  # resolved folder or file
    weights: dict[str, str]  # file name → sha256 of every file whose values change the features
    dtype: str
    preprocessing: str
    config: dict[str, Any] = field(default_factory=dict)  # kind-specific settings that change the features
    paths: dict[str, str] = field(default_factory=dict)  # kind-specific extra locations (not part of the key)
    cache_features: bool = True  # per-image features small enough to keep in the store

    @property
    def key(self) -> str:
        # By content: the same weights at another path are the same backbone.
        return content_key({"kind": self.kind, "weights": self.weights, "dtype": self.dtype,
                            "preprocessing": self.preprocessing, "config": self.config})

    @property
    def id(self) -> str:
        return f"{self.kind}:{self.source}"


@dataclass(frozen=True)
class ScorerInfo:
    id: str
    version: str
    level: str  # "image" or "set"
    backbone: str
    backbone_key: str
    weights: dict[str, str]  # every file whose values the score depends on → sha256
    higher_is_better: bool
    scale: str
    preprocessing: str
    dtype: str
    needs_prompt: bool
    needs_references: bool
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

    features: dict[str, torch.Tensor]  # feature name → (N, ...) tensor
    texts: list[str]
    text_embeds: torch.Tensor | None = None  # (N, D) when a head needs the prompt
    references: list[dict[str, np.ndarray]] | None = None  # per row: the summary of its reference set
    meta: dict[str, Any] = field(default_factory=dict)  # backbone constants heads need (logit scale, layout)
    images: list[Image.Image] | None = None  # joint scorers: the decoded RGB images, one per row
    backbone: Any = None  # joint scorers: the loaded backbone (its ``score_pairs``)

    @property
    def image_embeds(self) -> torch.Tensor:
        return self.features["image"]


class ScorerBase(ABC):
    """Identity and backbone of a scorer. Subclasses document their reference definition in the docstring.

    A concrete scorer class sets ``name``; its identity (version, backbone kind, direction, scale,
    description) is declared once, in ``ckptbench.metrics.registry``, and copied onto the class here.
    """

    name: ClassVar[str]
    version: ClassVar[str]
    level: ClassVar[Literal["image", "set"]]
    backbone_kind: ClassVar[str]
    default_model: ClassVar[str]
    higher_is_better: ClassVar[bool] = True
    scale: ClassVar[str]
    needs_prompt: ClassVar[bool] = False
    needs_references: ClassVar[bool] = False
    description: ClassVar[str]
    features: ClassVar[tuple[str, ...]] = ("image",)  # the backbone features the scorer reads
    uses_meta: ClassVar[bool] = False  # reads backbone constants (logit scale, layer layout) in ``score``
    joint: ClassVar[bool] = False  # reads image and prompt together in its backbone (see the module docstring)
    entry: ClassVar[ScorerEntry]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is None:  # a shared helper class (_HPS, _KenjiqqScorer): no identity of its own
            return
        entry = SCORERS.get(name)
        if entry is None:
            raise TypeError(f"scorer class {cls.__qualname__} names '{name}', which ckptbench.metrics.registry "
                            "does not list; add a ScorerEntry for it there.")
        declared = [attribute for attribute in IDENTITY_FIELDS if attribute in cls.__dict__]
        if declared:
            raise TypeError(f"scorer class {cls.__qualname__} declares {', '.join(declared)}; a scorer's identity "
                            f"is declared once, in its ScorerEntry in ckptbench.metrics.registry.")
        if cls.level != entry.level:
            raise TypeError(f"scorer class {cls.__qualname__} is a {cls.level}-level scorer but its ScorerEntry in "
                            f"ckptbench.metrics.registry says '{entry.level}'.")
        cls.entry = entry
        for attribute in IDENTITY_FIELDS:
            setattr(cls, attribute, getattr(entry, attribute))

    def __init__(self, options: ScorerOptions) -> None:
        self.options = options

    @property
    def model_source(self) -> str:
        return self.options.model or self.default_model

    @classmethod
    def default_weights(cls) -> str:
        """The weights used when the spec names none (listed by ``ckptbench scorers``)."""
        return cls.entry.default_weights

    def backbone_request(self) -> BackboneRequest:
        return BackboneRequest(kind=self.backbone_kind, model=self.model_source)

    def head_files(self) -> dict[str, str]:
        """Resolve and hash the head's own weight files (not the backbone's); none by default."""
        return {}

    def extra_identity(self) -> dict[str, Any]:
        """Settings besides weights that change this scorer's numbers (they enter the score key)."""
        return {}

    def info(self, backbone: BackboneSpec) -> ScorerInfo:
        return ScorerInfo(
            id=self.name, version=self.version, level=self.level, backbone=backbone.id,
            backbone_key=backbone.key,
            weights={**{f"backbone/{k}": v for k, v in backbone.weights.items()}, **self.head_files()},
            higher_is_better=self.higher_is_better, scale=self.scale, preprocessing=backbone.preprocessing,
            dtype=backbone.dtype, needs_prompt=self.needs_prompt, needs_references=self.needs_references,
            description=self.description, extra=self.extra_identity(),
        )

    def load(self, device: torch.device) -> None:  # noqa: B027 - most heads have nothing to load
        """Load head weights; called once, only when there is work."""


class ImageScorer(ScorerBase):
    """One number per image (per prompt for prompt scorers, per reference set for reference scorers)."""

    level = "image"

    def text_for(self, prompt: str) -> str:
        """The text the score depends on besides the image ('' for image-only scorers)."""
        return ""

    def summarize_references(self, features: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, np.ndarray]:
        """Reduce a reference set's features (name → (R, ...)) to what ``score`` needs; reference scorers only."""
        raise NotImplementedError(f"scorer '{self.name}' does not use reference images")

    @abstractmethod
    def score(self, batch: FeatureBatch) -> np.ndarray:
        """One finite float per image of the batch."""


class SetScorer(ScorerBase):
    """One number per set of images against a reference image set (distribution distances)."""

    level = "set"
    needs_references = True
    min_images: ClassVar[int] = 2

    def check_sizes(self, images: int, references: int) -> str | None:
        """A sentence saying why these set sizes are refused, or None when they are fine."""
        if images < self.min_images or references < self.min_images:
            return (f"scorer '{self.name}' needs at least {self.min_images} images in each set "
                    f"(got {images} images and {references} references)")
        return None

    @abstractmethod
    def score_set(self, features: np.ndarray, references: np.ndarray) -> float:
        """The distance between the set's features (N, D) and the references' features (R, D)."""
