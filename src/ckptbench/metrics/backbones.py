"""Shared feature extractors. One backbone is loaded once per run and serves every head that needs it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

from ckptbench.device import torch_dtype
from ckptbench.hashing import DigestCache, sha256_file
from ckptbench.metrics.base import BackboneSpec
from ckptbench.metrics.weights import resolve_folder

HF_CLIP = "hf-clip"


def resolve_hf_clip(source: str, dtype: str, scorer: str, cache: DigestCache | None) -> BackboneSpec:
    """Locate a transformers CLIP folder and hash the weight files ``from_pretrained`` will read."""
    folder = resolve_folder(source, scorer)
    weight_files = sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    if not weight_files:
        raise FileNotFoundError(f"scorer '{scorer}': {folder} holds no model weights (*.safetensors or *.bin)")
    weights = {f.name: sha256_file(f, cache) for f in weight_files}
    return BackboneSpec(kind=HF_CLIP, source=source, folder=str(folder), weights=weights, dtype=dtype,
                        preprocessing=_describe_preprocessing(folder))


def _describe_preprocessing(folder: Path) -> str:
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


class HFClipBackbone:
    """A transformers ``CLIPModel`` with its own image processor and tokenizer."""

    def __init__(self, spec: BackboneSpec, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        folder = spec.folder
        use_safetensors = any(name.endswith(".safetensors") for name in spec.weights)
        self.model = CLIPModel.from_pretrained(folder, use_safetensors=use_safetensors).eval().to(device)
        self.processor = CLIPImageProcessor.from_pretrained(folder)
        self.tokenizer = CLIPTokenizer.from_pretrained(folder)
        self.context_length = int(self.model.config.text_config.max_position_embeddings)
        self._autocast_dtype = None if spec.dtype == "fp32" else torch_dtype(spec.dtype)

    def _autocast(self) -> torch.autocast:
        enabled = self._autocast_dtype is not None
        return torch.autocast(self.device.type, dtype=self._autocast_dtype or torch.float32, enabled=enabled)

    @torch.inference_mode()
    def embed_images(self, images: list[Image.Image]) -> np.ndarray:
        pixels = self.processor(images=[image.convert("RGB") for image in images], return_tensors="pt")
        with self._autocast():
            output = self.model.get_image_features(pixel_values=pixels["pixel_values"].to(self.device))
        features = output if isinstance(output, torch.Tensor) else output.pooler_output
        return features.float().cpu().numpy()

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, max_length=self.context_length,
                                return_tensors="pt")
        with self._autocast():
            output = self.model.get_text_features(input_ids=tokens["input_ids"].to(self.device),
                                                  attention_mask=tokens["attention_mask"].to(self.device))
        features = output if isinstance(output, torch.Tensor) else output.pooler_output
        return features.float().cpu().numpy()
