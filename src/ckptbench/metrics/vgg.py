"""The VGG19 Gram-matrix backbone (``vgg19``) for style losses.

Images are resized to 512×512 (bilinear, antialiased on the PIL image), scaled to [0, 1] and normalised
with the ImageNet mean/std; the ``features`` part of a torchvision-layout VGG19 runs up to conv5_1.
At each of conv1_1, conv2_1, conv3_1, conv4_1, conv5_1 (``features`` indices 0, 5, 10, 19, 28) the
backbone gives Gram matrices of the (C, H·W) feature map F:

* ``gram_relu`` — of the rectified responses (Gatys et al.'s "conv1_1" is the ReLU output in the
  Caffe model), normalised: G = F·Fᵀ / (C·H·W);
* ``gram_ghostreview`` — unnormalised, G = F·Fᵀ, of the maps GhostReview's notebook actually used: it keeps
  each style layer's output tensor and torchvision's ``ReLU(inplace=True)`` that follows then overwrites it,
  so its conv1_1…conv4_1 maps are the rectified responses; its loop ends at conv5_1, whose map stays the
  conv output before the ReLU.

Each is a flat float32 vector: the layers' C×C matrices one after the other (``meta["channels"]``).
Weights: torchvision's ImageNet file (``vgg19-dcbc8e5e.pth``) from the torch hub cache, or any file in
the torchvision layout (``features.N.weight``), read with ``weights_only=True``. Channel widths come from
the file, so narrower test models in the same layout load through the same path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision import transforms
from torchvision.models.vgg import make_layers

from ckptbench.errors import ModelFileError, WeightsUnavailableError
from ckptbench.hashing import DigestCache, sha256_file
from ckptbench.metrics.base import BackboneRequest, BackboneSpec

KIND = "vgg19"
TORCHVISION_SOURCE = "torchvision:vgg19"
TORCHVISION_FILE = "vgg19-dcbc8e5e.pth"
TORCHVISION_URL = f"https://download.pytorch.org/models/{TORCHVISION_FILE}"
STYLE_LAYERS = (0, 5, 10, 19, 28)  # conv1_1 … conv5_1 in torchvision's vgg19().features
_LAYOUT = ("C", "C", "M", "C", "C", "M", "C", "C", "C", "C", "M", "C", "C", "C", "C", "M", "C", "C", "C", "C", "M")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIZE = 512
FEATURES = ("gram_relu", "gram_ghostreview")


def resolve_weights_file(source: str, scorer: str) -> Path:
    if source == TORCHVISION_SOURCE:
        path = Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILE
        if path.is_file():
            return path
        raise WeightsUnavailableError(
            f"scorer '{scorer}': the VGG19 ImageNet weights are not in the torch hub cache ({path}); download "
            f"{TORCHVISION_URL} there, or set [scorers.{scorer}] model = \"<path to {TORCHVISION_FILE}>\".")
    path = Path(source).expanduser()
    if not path.is_file():
        raise WeightsUnavailableError(f"scorer '{scorer}': VGG19 weights file {source} does not exist; fix "
                                      f"[scorers.{scorer}] model.")
    return path


def resolve(request: BackboneRequest, dtype: str, scorer: str, cache: DigestCache | None) -> BackboneSpec:
    path = resolve_weights_file(request.model, scorer)
    preprocessing = (f"resize to {SIZE}×{SIZE} (bilinear, antialiased), scale 1/255, normalise "
                     f"mean={list(IMAGENET_MEAN)} std={list(IMAGENET_STD)}")
    # Gram matrices are ~2.4 MB per image: per-image features are not kept; scores and reference
    # summaries are.
    return BackboneSpec(kind=KIND, source=request.model, location=str(path),
                        weights={path.name: sha256_file(path, cache)}, dtype=dtype, preprocessing=preprocessing,
                        config={"size": SIZE, "layers": list(STYLE_LAYERS)}, cache_features=False)


def load_vgg19_features(path: Path) -> torch.nn.Sequential:
    """``vgg19().features`` with the channel widths of the file, its weights loaded."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelFileError(f"{path} is not a loadable VGG19 state dict ({type(error).__name__}); give "
                             f"torchvision's {TORCHVISION_FILE} or a file in its layout.") from None
    state = {key.removeprefix("features."): value for key, value in state.items() if key.startswith("features.")}
    layout: list[str | int] = []
    index = 0
    for entry in _LAYOUT:
        if entry == "M":
            layout.append("M")
            index += 1
            continue
        weight = state.get(f"{index}.weight")
        if weight is None:
            raise ModelFileError(f"{path} lacks features.{index}.weight; give a VGG19 file in torchvision's layout.")
        layout.append(int(weight.shape[0]))
        index += 2  # conv, relu
    features = make_layers(layout)
    try:
        features.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ModelFileError(f"{path} does not have VGG19's layout ({str(error).splitlines()[0]}).") from None
    return features.eval()


def gram_matrices(features: torch.nn.Sequential, pixels: torch.Tensor, wanted: set[str]
                  ) -> dict[str, list[torch.Tensor]]:
    """Per wanted kind, the Gram matrix (N, C, C) of each style layer, computed in float32."""
    grams: dict[str, list[torch.Tensor]] = {name: [] for name in wanted}
    x = pixels
    last = STYLE_LAYERS[-1]
    for index, module in enumerate(features):
        if index > last + 1:
            break
        # ReLU never in place: the pre-ReLU map of conv5_1 may still be needed.
        x = torch.relu(x) if isinstance(module, torch.nn.ReLU) else module(x)
        rectified = index - 1 in STYLE_LAYERS
        if rectified and "gram_relu" in wanted:
            grams["gram_relu"].append(_gram(x, normalise=True))
        if "gram_ghostreview" in wanted and ((rectified and index - 1 != last) or index == last):
            grams["gram_ghostreview"].append(_gram(x, normalise=False))
    return grams


def _gram(feature_map: torch.Tensor, normalise: bool) -> torch.Tensor:
    n, c, h, w = feature_map.shape
    with torch.autocast(feature_map.device.type, enabled=False):  # sums over H·W positions: keep float32
        flat = feature_map.float().reshape(n, c, h * w)
        gram = torch.bmm(flat, flat.transpose(1, 2))
    return gram / (c * h * w) if normalise else gram


class VGGGramBackbone:
    def __init__(self, spec: BackboneSpec, device: torch.device, size: int = SIZE) -> None:
        from ckptbench.metrics.backbones import autocast

        self.spec = spec
        self.device = device
        self.features = load_vgg19_features(Path(spec.location)).to(device)
        self.channels = [int(self.features[i].out_channels) for i in STYLE_LAYERS]
        self.meta: dict[str, Any] = {"channels": self.channels}
        self.transform = transforms.Compose([
            transforms.Resize((size, size), interpolation=transforms.InterpolationMode.BILINEAR),
            transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
        self._autocast = lambda: autocast(device, spec.dtype)

    def prepare_images(self, images: list[Image.Image]) -> torch.Tensor:
        return torch.stack([self.transform(image.convert("RGB")) for image in images])

    def embed_images(self, images: list[Image.Image], wanted: set[str]) -> dict[str, np.ndarray]:
        return self.embed_pixels(self.prepare_images(images), wanted)

    @torch.inference_mode()
    def embed_pixels(self, pixels: torch.Tensor, wanted: set[str]) -> dict[str, np.ndarray]:
        with self._autocast():
            grams = gram_matrices(self.features, pixels.to(self.device), wanted)
        return {name: torch.cat([g.reshape(len(pixels), -1) for g in layers], dim=1).float().cpu().numpy()
                for name, layers in grams.items()}

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError("the VGG19 backbone has no text tower")


def split_layers(flat: np.ndarray, channels: list[int]) -> list[np.ndarray]:
    """Undo the flattening of ``embed_images``: (…, Σ C²) → one (…, C, C) array per layer."""
    parts, start = [], 0
    for c in channels:
        parts.append(flat[..., start : start + c * c].reshape(*flat.shape[:-1], c, c))
        start += c * c
    return parts
