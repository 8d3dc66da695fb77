"""Shared feature extractors. One backbone is loaded once per run and serves every head that needs it.

Each kind lives in its own module and provides ``resolve`` (find and hash the files, without loading)
and a backbone class (load and compute features). This module dispatches on the kind.
"""

from __future__ import annotations

import importlib
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
    """A loaded feature extractor.

    Image features come in two steps so that the engine can prepare the next batches (decode and
    preprocess, on the CPU, in background threads) while the current batch runs through the network:
    ``prepare_images`` must not touch the model (it runs in another thread), ``embed_pixels`` runs the
    network. A backbone that has only ``embed_images`` still works; then only decoding overlaps.
    """

    spec: BackboneSpec
    meta: dict[str, Any]  # constants heads need besides the features (logit scale, layer layout)

    def prepare_images(self, images: list[Image.Image]) -> torch.Tensor:
        """The network's input for a batch of RGB images (a CPU tensor): preprocessing only."""
        ...

    def embed_pixels(self, pixels: torch.Tensor, wanted: set[str]) -> dict[str, np.ndarray]:
        """Features of prepared images: name → (N, ...) float32 array, for each wanted name."""
        ...

    def embed_images(self, images: list[Image.Image], wanted: set[str]) -> dict[str, np.ndarray]:
        """``embed_pixels(prepare_images(images), wanted)``."""
        ...

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        """Text embeddings (N, D) for backbones with a text tower."""
        ...


class JointBackbone(Backbone, Protocol):
    def score_pairs(self, images: list[Image.Image], texts: list[str]) -> np.ndarray:
        """One float per (image, text) pair, for models that read both together (ImageReward, VQAScore)."""
        ...


class TokenCounter(Protocol):
    context_length: int

    def __call__(self, text: str) -> int: ...


Resolver = Callable[[BackboneRequest, str, str, DigestCache | None], BackboneSpec]


# Each kind's module, imported only when a scorer asks for that kind (open_clip, torchvision models and
# clean-fid are slow to import).
_KIND_MODULES = {"hf-clip": "hf_clip", "open-clip": "open_clip_backbone", "vgg19": "vgg", "fid-inception": "inception",
                 "imagereward": "imagereward_model", "vqa": "vqa_backbone"}
_BACKBONE_CLASSES = {"hf-clip": "HFClipBackbone", "open-clip": "OpenClipBackbone", "vgg19": "VGGGramBackbone",
                     "fid-inception": "FIDInceptionBackbone", "imagereward": "ImageRewardBackbone",
                     "vqa": "VQABackbone"}
# Kinds whose text side truncates prompts, with the class that counts a prompt's tokens as they do.
_TOKEN_COUNTERS = {"hf-clip": "HFTokenCounter", "open-clip": "OpenClipTokenCounter",
                   "imagereward": "BertTokenCounter"}


def _kind_module(kind: str) -> Any:
    return importlib.import_module(f"ckptbench.metrics.{_KIND_MODULES[kind]}")


def resolve_backbone(request: BackboneRequest, dtype: str, scorer: str, cache: DigestCache | None) -> BackboneSpec:
    if request.kind not in _KIND_MODULES:
        raise SpecError(f"scorer '{scorer}' asks for unknown backbone kind '{request.kind}'")
    resolver: Resolver = _kind_module(request.kind).resolve
    return resolver(request, dtype, scorer, cache)


def load_backbone(spec: BackboneSpec, device: torch.device) -> Backbone:
    backbone: Backbone = getattr(_kind_module(spec.kind), _BACKBONE_CLASSES[spec.kind])(spec, device)
    return backbone


def token_counter(spec: BackboneSpec) -> TokenCounter | None:
    """Counts a text's tokens with the backbone's own tokenizer (None for backbones that never truncate)."""
    if spec.kind not in _TOKEN_COUNTERS:
        return None
    counter: TokenCounter = getattr(_kind_module(spec.kind), _TOKEN_COUNTERS[spec.kind])(spec)
    return counter


def autocast(device: torch.device, dtype: str) -> torch.autocast:
    """Mixed precision for fp16/bf16 backbones; fp32 runs with autocast disabled."""
    enabled = dtype != "fp32"
    return torch.autocast(device.type, dtype=torch_dtype(dtype) if enabled else torch.float32, enabled=enabled)
