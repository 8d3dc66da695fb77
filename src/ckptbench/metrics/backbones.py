"""Shared feature extractors. One backbone is loaded once per run and serves every head that needs it.

Each kind lives in its own module and provides ``resolve`` (find and hash the files, without loading)
and a backbone class (load and compute features). This module dispatches on the kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image

from ckptbench.device import torch_dtype
from ckptbench.errors import SpecError
from ckptbench.hashing import DigestCache
from ckptbench.metrics.base import BackboneRequest, BackboneSpec


class Backbone(Protocol):
    spec: BackboneSpec
    meta: dict[str, Any]  # constants heads need besides the features (logit scale, layer layout)

    def embed_images(self, images: list[Image.Image], wanted: set[str]) -> dict[str, np.ndarray]:
        """Features of a batch of RGB images: name → (N, ...) float32 array, for each wanted name."""
        ...

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Text embeddings (N, D) for backbones with a text tower."""
        ...


class TokenCounter(Protocol):
    context_length: int

    def __call__(self, text: str) -> int: ...


Resolver = Callable[[BackboneRequest, str, str, DigestCache | None], BackboneSpec]


def _kinds() -> dict[str, tuple[Resolver, Callable[[BackboneSpec, torch.device], Backbone]]]:
    # Imported here so that a kind's heavy imports (open_clip, torchvision models) load only when used.
    from ckptbench.metrics import hf_clip, inception, open_clip_backbone, vgg

    return {
        hf_clip.KIND: (hf_clip.resolve, hf_clip.HFClipBackbone),
        open_clip_backbone.KIND: (open_clip_backbone.resolve, open_clip_backbone.OpenClipBackbone),
        vgg.KIND: (vgg.resolve, vgg.VGGGramBackbone),
        inception.KIND: (inception.resolve, inception.FIDInceptionBackbone),
    }


def resolve_backbone(request: BackboneRequest, dtype: str, scorer: str, cache: DigestCache | None) -> BackboneSpec:
    kinds = _kinds()
    if request.kind not in kinds:
        raise SpecError(f"scorer '{scorer}' asks for unknown backbone kind '{request.kind}'")
    return kinds[request.kind][0](request, dtype, scorer, cache)


def load_backbone(spec: BackboneSpec, device: torch.device) -> Backbone:
    return _kinds()[spec.kind][1](spec, device)


def token_counter(spec: BackboneSpec) -> TokenCounter | None:
    """Counts a text's tokens with the backbone's own tokenizer (None for backbones without text)."""
    from ckptbench.metrics import hf_clip, open_clip_backbone

    if spec.kind == hf_clip.KIND:
        return hf_clip.HFTokenCounter(spec)
    if spec.kind == open_clip_backbone.KIND:
        return open_clip_backbone.OpenClipTokenCounter(spec)
    return None


def autocast(device: torch.device, dtype: str) -> torch.autocast:
    """Mixed precision for fp16/bf16 backbones; fp32 runs with autocast disabled."""
    enabled = dtype != "fp32"
    return torch.autocast(device.type, dtype=torch_dtype(dtype) if enabled else torch.float32, enabled=enabled)
