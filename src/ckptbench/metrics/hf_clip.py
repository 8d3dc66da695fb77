"""The transformers CLIP backbone (``hf-clip``): OpenAI and LAION CLIP models saved in the transformers format.

Features: ``image`` — the projected image embedding (``get_image_features``, not normalised);
``pooled`` — the vision tower's pooled output before the projection (what the kenjiqq heads read).
Text: the projected text embedding of the prompt, truncated to the text encoder's context.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

from ckptbench.errors import WeightsUnavailableError
from ckptbench.hashing import DigestCache, sha256_file
from ckptbench.metrics.base import BackboneRequest, BackboneSpec
from ckptbench.metrics.weights import resolve_folder

KIND = "hf-clip"
_PROCESSOR_FILES = ("preprocessor_config.json",)
_TOKENIZER_FILES = ("tokenizer.json", "vocab.json")


def resolve(request: BackboneRequest, dtype: str, scorer: str, cache: DigestCache | None) -> BackboneSpec:
    """Locate a transformers CLIP folder and hash the weight files ``from_pretrained`` will read."""
    folder = resolve_folder(request.model, scorer)
    weight_files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not weight_files:
        raise WeightsUnavailableError(f"scorer '{scorer}': {folder} holds no model weights (*.safetensors or "
                                      f"*.bin); fix [scorers.{scorer}] model.")
    processor = folder
    if not all((folder / name).is_file() for name in _PROCESSOR_FILES) or not any(
            (folder / name).is_file() for name in _TOKENIZER_FILES):
        if request.processor is None:
            raise WeightsUnavailableError(f"scorer '{scorer}': {folder} has no preprocessor/tokenizer files; use "
                                          "a complete transformers CLIP folder.")
        # Some models (PickScore) ship only weights; their reference code takes the processor elsewhere.
        processor = resolve_folder(request.processor, scorer)
    weights = {f.name: sha256_file(f, cache) for f in weight_files}
    return BackboneSpec(kind=KIND, source=request.model, location=str(folder), weights=weights, dtype=dtype,
                        preprocessing=describe_preprocessing(processor), paths={"processor": str(processor)},
                        config={"processor": request.processor if processor != folder else None})


def describe_preprocessing(folder: Path) -> str:
    config_file = folder / "preprocessor_config.json"
    if not config_file.is_file():
        return "CLIPImageProcessor defaults"
    config = json.loads(config_file.read_text())
    size = config.get("size", {})
    size = size.get("shortest_edge", size) if isinstance(size, dict) else size
    crop = config.get("crop_size", {})
    crop = f"{crop.get('height')}×{crop.get('width')}" if isinstance(crop, dict) else crop
    resample = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}.get(config.get("resample", 3), "?")
    return (f"resize shortest side to {size} ({resample}), center crop {crop}, scale 1/255, normalise "
            f"mean={config.get('image_mean')} std={config.get('image_std')}")


def _context_length(folder: str) -> int:
    config = json.loads((Path(folder) / "config.json").read_text())
    return int(config.get("text_config", {}).get("max_position_embeddings", 77))


@functools.lru_cache(maxsize=4)
def _tokenizer(folder: str) -> CLIPTokenizer:
    """One tokenizer per folder and process: counting prompt tokens and embedding prompts share it (a CLIP
    tokenizer takes a quarter of a second to build)."""
    return CLIPTokenizer.from_pretrained(folder)


class HFTokenCounter:
    """Counts tokens (with start and end tokens) as the CLIP tokenizer of the model produces them."""

    def __init__(self, spec: BackboneSpec) -> None:
        self.tokenizer = _tokenizer(spec.paths["processor"])
        self.context_length = _context_length(spec.location)

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=False)["input_ids"])


class HFClipBackbone:
    """A transformers ``CLIPModel`` with its image processor and tokenizer."""

    def __init__(self, spec: BackboneSpec, device: torch.device) -> None:
        from ckptbench.metrics.backbones import autocast

        self.spec = spec
        self.device = device
        use_safetensors = any(name.endswith(".safetensors") for name in spec.weights)
        self.model = CLIPModel.from_pretrained(spec.location, use_safetensors=use_safetensors).eval().to(device)
        self.processor = CLIPImageProcessor.from_pretrained(spec.paths["processor"])
        self.tokenizer = _tokenizer(spec.paths["processor"])
        self.context_length = int(self.model.config.text_config.max_position_embeddings)
        self.meta: dict[str, Any] = {"logit_scale": float(self.model.logit_scale.detach().exp())}
        self._autocast = lambda: autocast(device, spec.dtype)

    def prepare_images(self, images: list[Image.Image]) -> torch.Tensor:
        return self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")["pixel_values"]

    def embed_images(self, images: list[Image.Image], wanted: set[str]) -> dict[str, np.ndarray]:
        return self.embed_pixels(self.prepare_images(images), wanted)

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor, wanted: set[str]) -> dict[str, np.ndarray]:
        with self._autocast():
            vision = self.model.vision_model(pixel_values=pixels.to(self.device))
            pooled = vision.pooler_output
            projected = self.model.visual_projection(pooled)
        found = {"image": projected, "pooled": pooled}
        return {name: found[name].float().cpu().numpy() for name in wanted}

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.context_length,
                                return_tensors="pt")
        with self._autocast():
            output = self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                  attention_mask=tokens["attention_mask"].to(self.device))
        features = output if isinstance(output, torch.Tensor) else output.pooler_output
        return features.float().cpu().numpy()
