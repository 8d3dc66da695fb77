"""The open_clip backbone (``open-clip``): an open_clip architecture with a full checkpoint loaded into it.

Used by HPS v2 / v2.1, which fine-tune the whole of open_clip ViT-H-14: ``model`` names the architecture
(a built-in open_clip name such as ``ViT-H-14``, or a folder with an ``open_clip_config.json``) and
``head`` the checkpoint (HPS's ``{"state_dict": …}`` ``.pt`` format, or ``.safetensors``), read with
``weights_only=True``.

Preprocessing is the transform HPS scores with: ``hpsv2/img_score.py`` and ``evaluation.py`` build their
model with ``light_augmentation=True``, whose validation transform (``hpsv2/src/open_clip/transform.py``,
``ResizeMaxSize``) converts to RGB, applies ``ToTensor``, resizes the tensor so that its *longer* side is
the model's image size (bicubic; torchvision antialiases tensor resizes since 0.17), pads it to a square
with black (0 before normalisation; the odd pixel goes right/bottom), then normalises with the OpenAI CLIP
mean/std. Nothing of a non-square image is cropped away. One deviation: when the longer side already has
the target size the reference neither resizes nor pads, so a non-square image of that size reaches the
model non-square and cannot be scored there; we pad it like every other image (square images, the usual
case, are identical). Features: ``image`` — ``encode_image`` (not normalised); text: ``encode_text``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch
from PIL import Image
from safetensors.torch import load_file
from torchvision import transforms
from torchvision.transforms import functional

from ckptbench.errors import ModelFileError, WeightsUnavailableError
from ckptbench.hashing import DigestCache, sha256_file
from ckptbench.metrics.base import BackboneRequest, BackboneSpec
from ckptbench.metrics.weights import resolve_file

KIND = "open-clip"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
CONFIG_FILE = "open_clip_config.json"


def _architecture(source: str, scorer: str) -> tuple[dict[str, Any], str]:
    """The model config of a built-in open_clip name or of a folder's ``open_clip_config.json``."""
    folder = Path(source).expanduser()
    if folder.is_dir():
        config_file = folder / CONFIG_FILE
        if not config_file.is_file():
            raise WeightsUnavailableError(f"scorer '{scorer}': {folder} has no {CONFIG_FILE}; give a built-in "
                                          f"open_clip architecture name (e.g. ViT-H-14) as [scorers.{scorer}] model.")
        return json.loads(config_file.read_text())["model_cfg"], f"local-dir:{folder}"
    config = open_clip.get_model_config(source)
    if config is None:
        raise WeightsUnavailableError(f"scorer '{scorer}': '{source}' is neither an open_clip architecture nor a "
                                      f"folder with {CONFIG_FILE}; fix [scorers.{scorer}] model.")
    return config, source


def resolve(request: BackboneRequest, dtype: str, scorer: str, cache: DigestCache | None) -> BackboneSpec:
    config, name = _architecture(request.model, scorer)
    if request.head is None:
        raise WeightsUnavailableError(f"scorer '{scorer}' needs a checkpoint; set [scorers.{scorer}] head.")
    checkpoint = resolve_file(request.head, scorer)
    size = config["vision_cfg"].get("image_size", 224)
    preprocessing = (f"to tensor, resize longer side to {size} (bicubic, antialiased), pad to {size}×{size} with "
                     f"black (centred), normalise mean={list(OPENAI_MEAN)} std={list(OPENAI_STD)}")
    return BackboneSpec(kind=KIND, source=request.model, location=str(checkpoint),
                        weights={checkpoint.name: sha256_file(checkpoint, cache)}, dtype=dtype,
                        preprocessing=preprocessing, config={"model_cfg": config}, paths={"name": name})


def create_open_clip(name: str) -> torch.nn.Module:
    """The architecture with random weights (a checkpoint is loaded into it afterwards)."""
    # open_clip logs a warning on the root logger whenever a model starts without weights: expected here.
    logging.disable(logging.WARNING)
    try:
        return open_clip.create_model(name, load_weights=False)
    finally:
        logging.disable(logging.NOTSET)


def load_checkpoint_state(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of an open_clip checkpoint, never unpickling code."""
    try:
        if path.suffix == ".safetensors":
            state: Any = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelFileError(f"{path} is not a loadable open_clip checkpoint ({type(error).__name__}: {error}); "
                             "give a .pt state dict or .safetensors file.") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ModelFileError(f"{path} does not hold a state dict; give an open_clip checkpoint.")
    return {key.removeprefix("module."): value for key, value in state.items()}


def resize_longer_side_and_pad(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """A (C, H, W) tensor resized so that max(H, W) = ``size``, then padded with zeros to ``size``×``size``."""
    height, width = pixels.shape[-2:]
    scale = size / max(height, width)
    if scale != 1.0:
        # Python's round (half to even), as the reference computes the new size.
        height, width = round(height * scale), round(width * scale)
        pixels = functional.resize(pixels, [height, width], interpolation=transforms.InterpolationMode.BICUBIC,
                                   antialias=True)
    pad_h, pad_w = size - height, size - width
    return functional.pad(pixels, [pad_w // 2, pad_h // 2, pad_w - pad_w // 2, pad_h - pad_h // 2], fill=0)


def preprocess(size: int) -> transforms.Compose:
    """HPS's evaluation transform (see the module docstring)."""
    return transforms.Compose([
        transforms.ToTensor(),
        transforms.Lambda(lambda pixels: resize_longer_side_and_pad(pixels, size)),
        transforms.Normalize(OPENAI_MEAN, OPENAI_STD),
    ])


class OpenClipTokenCounter:
    def __init__(self, spec: BackboneSpec) -> None:
        self.tokenizer = open_clip.get_tokenizer(spec.paths["name"])
        self.context_length = int(spec.config["model_cfg"]["text_cfg"].get("context_length", 77))

    def __call__(self, text: str) -> int:
        return len(self.tokenizer.encode(text)) + 2  # start and end tokens


class OpenClipBackbone:
    def __init__(self, spec: BackboneSpec, device: torch.device) -> None:
        from ckptbench.metrics.backbones import autocast

        self.spec = spec
        self.device = device
        model = create_open_clip(spec.paths["name"])
        state = load_checkpoint_state(Path(spec.location))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise ModelFileError(f"{spec.location} does not fit the {spec.source} architecture "
                                 f"({str(error).splitlines()[0]}); give the checkpoint made for it.") from None
        self.model = model.eval().to(device)
        self.tokenizer = open_clip.get_tokenizer(spec.paths["name"])
        self.transform = preprocess(int(spec.config["model_cfg"]["vision_cfg"].get("image_size", 224)))
        self.meta: dict[str, Any] = {"logit_scale": float(self.model.logit_scale.detach().exp())}
        self._autocast = lambda: autocast(device, spec.dtype)

    def prepare_images(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self.transform(image.convert("RGB")) for image in images])

    def embed_images(self, images: list[Image.Image], wanted: set[str]) -> dict[str, np.ndarray]:
        return self.embed_pixels(self.prepare_images(images), wanted)

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor, wanted: set[str]) -> dict[str, np.ndarray]:
        with self._autocast():
            features = self.model.encode_image(pixels.to(self.device))
        return {"image": features.float().cpu().numpy()}

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.tokenizer(texts).to(self.device)
        with self._autocast():
            features = self.model.encode_text(tokens)
        return features.float().cpu().numpy()
