"""kenjiqq aesthetics-scorer heads (``kenjiqq-rating``, ``kenjiqq-artifacts``), as GhostReview uses them.

Reference definition (kenjiqq/aesthetics-scorer, ``aesthetics_scorer/model.py`` and ``demo.py``): the
CLIP vision tower's pooled output (before the visual projection), L2-normalised, through an MLP trained on
AI Horde ratings of Stable Diffusion images. A head is a ``.pth`` state dict plus a ``.config`` JSON file
of the same stem with ``input_size``, ``hidden_dim``, ``use_activation``, ``dropout``, ``reduce_dims``
and ``output_activation``. The MLP is four hidden Linear layers (optional ReLU after each, dropout after
the first three) and a Linear to one output; with ``output_activation = "sigmoid"`` the output is
``1 + 9·sigmoid(x)``. Layer widths are read from the weights (the reference constructor ignores the
config's ``reduce_dims`` when sizing layers, so the weights are the truth).

The CLIP model is not named in the ``.config``: it is named by the head's file name
(``…openclip_vit_l_14`` → ``laion/CLIP-ViT-L-14-laion2B-s32B-b82K``, ``…openclip_vit_h_14`` →
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``) and checked against ``input_size`` (the vision width).
Rating is on a ≈1–10 scale (higher is better); artifacts on ≈1–5 (lower is better).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ckptbench.errors import ModelFileError, SpecError, WeightsUnavailableError
from ckptbench.hashing import sha256_file
from ckptbench.metrics.base import FeatureBatch, ImageScorer
from ckptbench.metrics.weights import resolve_file

# CLIP models the published heads were trained on, by the tag in their file names and by vision width.
BACKBONES_BY_TAG = {
    "openclip_vit_l_14": "laion/CLIP-ViT-L-14-laion2B-s32B-b82K",
    "openclip_vit_h_14": "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
    "openclip_vit_bigg_14": "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k",
}
BACKBONES_BY_WIDTH = {1024: BACKBONES_BY_TAG["openclip_vit_l_14"], 1280: BACKBONES_BY_TAG["openclip_vit_h_14"],
                      1664: BACKBONES_BY_TAG["openclip_vit_bigg_14"]}
_PLAIN_INDICES = (0, 2, 4, 6, 7)
_RELU_INDICES = (0, 3, 6, 9, 11)


def config_path(head: Path) -> Path:
    return head.with_suffix(".config")


def read_config(head: Path, scorer: str) -> dict[str, Any]:
    path = config_path(head)
    if not path.is_file():
        raise ModelFileError(f"scorer '{scorer}': {path} is missing; a kenjiqq head needs its .config JSON file "
                             "next to the .pth.")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ModelFileError(f"scorer '{scorer}': {path} is not valid JSON ({error}).") from None
    if "input_size" not in config:
        raise ModelFileError(f"scorer '{scorer}': {path} lacks 'input_size'; give the head's own .config file.")
    return config


class KenjiqqHead(nn.Module):
    def __init__(self, widths: list[int], relu: bool, sigmoid: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for index in range(5):
            layers.append(nn.Linear(widths[index], widths[index + 1]))
            if index < 4 and relu:
                layers.append(nn.ReLU())
            if index < 3:
                layers.append(nn.Dropout(0.0))
        self.layers = nn.Sequential(*layers)
        self.sigmoid = sigmoid

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        out = self.layers(embeddings)
        return 1.0 + 9.0 * torch.sigmoid(out) if self.sigmoid else out


def load_kenjiqq_head(path: Path, scorer: str) -> KenjiqqHead:
    config = read_config(path, scorer)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelFileError(f"scorer '{scorer}': {path} is not a loadable head state dict "
                             f"({type(error).__name__}); give the aesthetics-scorer .pth file.") from None
    indices = tuple(sorted({int(key.split(".")[1]) for key in state if key.startswith("layers.")}))
    if indices not in (_PLAIN_INDICES, _RELU_INDICES):
        raise ModelFileError(f"scorer '{scorer}': {path} does not have the aesthetics-scorer layout (layers "
                             f"{indices}); give a kenjiqq head file.")
    widths = [int(state[f"layers.{indices[0]}.weight"].shape[1])]
    widths += [int(state[f"layers.{i}.weight"].shape[0]) for i in indices]
    if widths[0] != int(config["input_size"]) or bool(config.get("use_activation")) != (indices == _RELU_INDICES):
        raise ModelFileError(f"scorer '{scorer}': {path} and {config_path(path).name} disagree (input size or "
                             "activations); give the .config saved with this head.")
    head = KenjiqqHead(widths, relu=indices == _RELU_INDICES, sigmoid=config.get("output_activation") == "sigmoid")
    head.load_state_dict(state)
    return head.eval()


class _KenjiqqScorer(ImageScorer):
    default_model = BACKBONES_BY_TAG["openclip_vit_l_14"]
    features = ("pooled",)
    head_file: ClassVar[str]

    def _head_path(self) -> Path:
        if self.options.head is None:
            raise WeightsUnavailableError(
                f"scorer '{self.name}' needs its head: get {self.head_file}.pth and {self.head_file}.config from "
                f"the kenjiqq/aesthetics-scorer repository (aesthetics_scorer/models/) and set "
                f'[scorers.{self.name}] head = "<path to the .pth>".')
        return resolve_file(self.options.head, self.name)

    @property
    def model_source(self) -> str:
        if self.options.model:
            return self.options.model
        head = self._head_path()
        for tag, model in BACKBONES_BY_TAG.items():
            if tag in head.name:
                return model
        width = int(read_config(head, self.name)["input_size"])
        if width in BACKBONES_BY_WIDTH:
            return BACKBONES_BY_WIDTH[width]
        raise SpecError(f"scorer '{self.name}': cannot tell which CLIP model {head.name} was trained on; set "
                        f"[scorers.{self.name}] model.")

    def head_files(self) -> dict[str, str]:
        head = self._head_path()
        config = config_path(head)
        return {f"head/{head.name}": sha256_file(head), f"head/{config.name}": sha256_file(config)}

    def load(self, device: torch.device) -> None:
        self.head = load_kenjiqq_head(self._head_path(), self.name).to(device)
        self.device = device

    @torch.inference_mode()
    def score(self, batch: FeatureBatch) -> np.ndarray:
        pooled = batch.features["pooled"].float()
        expected = self.head.layers[0].in_features
        if pooled.shape[-1] != expected:
            raise ModelFileError(f"scorer '{self.name}': the CLIP vision tower gives {pooled.shape[-1]}-dim pooled "
                                 f"outputs but the head expects {expected}; use the CLIP model it was trained on.")
        embeddings = torch.nn.functional.normalize(pooled, dim=-1).to(self.device)
        return self.head(embeddings).squeeze(-1).cpu().numpy().astype(np.float64)


class KenjiqqRating(_KenjiqqScorer):
    """kenjiqq aesthetics-scorer rating head (≈1–10, higher is better)."""

    name = "kenjiqq-rating"
    head_file = "aesthetics_scorer_rating_openclip_vit_l_14"


class KenjiqqArtifacts(_KenjiqqScorer):
    """kenjiqq aesthetics-scorer artifacts head (≈1–5, lower is better: fewer visible artifacts)."""

    name = "kenjiqq-artifacts"
    head_file = "aesthetics_scorer_artifacts_openclip_vit_l_14"
