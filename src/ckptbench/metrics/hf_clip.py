"""The transformers CLIP backbone (``hf-clip``): OpenAI and LAION CLIP models saved in the transformers format
(every folder layout ``clip_folder`` lists).

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

from ckptbench.hashing import DigestCache, sha256_file
from ckptbench.metrics.base import BackboneRequest, BackboneSpec
from ckptbench.metrics.clip_folder import locate_clip_folder, processor_problem
from ckptbench.metrics.weights import resolve_folder

KIND = "hf-clip"
_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def resolve(request: BackboneRequest, dtype: str, scorer: str, cache: DigestCache | None) -> BackboneSpec:
    """Locate a transformers CLIP folder (any layout in ``clip_folder``), hash the weight files
    ``from_pretrained`` will read, and describe the preprocessing its image processor will apply."""
    folder = resolve_folder(request.model, scorer)
    processor = None
    if processor_problem(folder) is not None and request.processor is not None:
        # Some models (PickScore) ship only weights; their reference code takes the processor elsewhere.
        processor = resolve_folder(request.processor, scorer)
    found = locate_clip_folder(folder, processor, scorer)
    weights = {f.name: sha256_file(f, cache) for f in found.weights}
    image_processor = CLIPImageProcessor.from_pretrained(str(found.processor))
    return BackboneSpec(kind=KIND, source=request.model, location=str(folder), weights=weights, dtype=dtype,
                        preprocessing=describe_preprocessing(image_processor),
                        paths={"processor": str(found.processor)},
                        config={"processor": request.processor if found.processor != folder else None})


def image_backend(processor: Any) -> str:
    """Which library resizes: transformers' torchvision image processors ("fast" in transformers 4, the
    default in 5) and its PIL ones give slightly different pixels (≈2e-5 in LAION scores)."""
    names = {cls.__name__ for cls in type(processor).__mro__}
    return "torchvision" if names & {"TorchvisionBackend", "BaseImageProcessorFast"} else "PIL"


def describe_preprocessing(processor: Any) -> str:
    """What the loaded image processor will do, from its own settings (so every file layout that configures
    it, and every default it falls back to, is described as it runs)."""
    config = processor.to_dict()
    steps = [f"{type(processor).__name__} ({image_backend(processor)} backend)"]
    if config.get("do_resize", True):
        size = config.get("size") or {}
        resample = _RESAMPLE.get(int(config.get("resample", 3)), "?")
        if "shortest_edge" in size:
            steps.append(f"resize shortest side to {size['shortest_edge']} ({resample})")
        else:
            steps.append(f"resize to {size.get('height')}×{size.get('width')} ({resample})")
    if config.get("do_center_crop", True):
        crop = config.get("crop_size") or {}
        steps.append(f"center crop {crop.get('height')}×{crop.get('width')}")
    if config.get("do_rescale", True):
        steps.append(f"scale {config.get('rescale_factor', 1 / 255):.10g}")
    if config.get("do_normalize", True):
        # As plain lists: the same values must give the same description whether read from a file or a default.
        mean, std = ([float(v) for v in config.get(name) or ()] for name in ("image_mean", "image_std"))
        steps.append(f"normalise mean={mean} std={std}")
    return ", ".join(steps)


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
