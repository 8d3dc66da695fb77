"""LAION improved-aesthetic-predictor (``laion-aesthetic-v2``).

Reference definition (christophschuhmann/improved-aesthetic-predictor, ``simple_inference.py``):
the OpenAI CLIP ViT-L/14 image embedding, L2-normalised, through an MLP head trained on SAC+LOGOS+AVA
ratings. The standard head ``sac+logos+ava1-l14-linearMSE.pth`` is
``Linear(768,1024) Dropout Linear(1024,128) Dropout Linear(128,64) Dropout Linear(64,16) Linear(16,1)``
(no activations; dropout inactive at inference); the ``reluMSE`` heads put a ReLU after each hidden
Linear and so number their layers 0, 3, 6, 9, 11. Scores are on the 1–10 rating scale of AVA.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
from torch import nn

from ckptbench.errors import ModelFileError
from ckptbench.hashing import sha256_file
from ckptbench.metrics.base import FeatureBatch, ImageScorer
from ckptbench.metrics.weights import resolve_file

# The sha256 of the standard head file as published; recorded so a different file is visible.
LINEAR_MSE_SHA256 = "21dd590f3ccdc646f0d53120778b296013b096a035a2718c9cb0d511bff0f1e0"
DEFAULT_HEAD = "hf:camenduru/improved-aesthetic-predictor/sac+logos+ava1-l14-linearMSE.pth"

_LINEAR_INDICES = (0, 2, 4, 6, 7)
_RELU_INDICES = (0, 3, 6, 9, 11)


class AestheticHead(nn.Module):
    """The improved-aesthetic-predictor MLP in either of its two published layouts."""

    def __init__(self, embedding_dim: int, relu: bool) -> None:
        super().__init__()
        widths = [embedding_dim, 1024, 128, 64, 16, 1]
        layers: list[nn.Module] = []
        dropouts = [0.2, 0.2, 0.1]
        for index, (fan_in, fan_out) in enumerate(itertools.pairwise(widths)):
            layers.append(nn.Linear(fan_in, fan_out))
            if index < 4 and relu:
                layers.append(nn.ReLU())
            if index < 3:
                layers.append(nn.Dropout(dropouts[index]))
        self.layers = nn.Sequential(*layers)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings)


def load_aesthetic_head(path: str, scorer: str = "laion-aesthetic-v2") -> AestheticHead:
    """Load a head ``.pth`` with ``weights_only=True`` (a plain state dict; no code is unpickled)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ModelFileError(f"scorer '{scorer}': {path} is not a loadable aesthetic head state dict "
                             f"({type(error).__name__}); give the improved-aesthetic-predictor .pth file.") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    indices = tuple(sorted({int(key.split(".")[1]) for key in state if key.startswith("layers.")}))
    if indices not in (_LINEAR_INDICES, _RELU_INDICES):
        raise ModelFileError(f"scorer '{scorer}': {path} does not have the layout of an improved-aesthetic-"
                             f"predictor head (layers {indices}); give a linearMSE or reluMSE head file.")
    head = AestheticHead(int(state["layers.0.weight"].shape[1]), relu=indices == _RELU_INDICES)
    head.load_state_dict(state)
    return head.eval()


class LaionAestheticV2(ImageScorer):
    """LAION improved aesthetic predictor on L2-normalised CLIP ViT-L/14 image embeddings (1–10)."""

    name = "laion-aesthetic-v2"
    default_model = "openai/clip-vit-large-patch14"

    @property
    def head_source(self) -> str:
        return self.options.head or DEFAULT_HEAD

    def head_files(self) -> dict[str, str]:
        path = resolve_file(self.head_source, self.name)
        return {f"head/{path.name}": sha256_file(path)}

    def load(self, device: torch.device) -> None:
        self.head = load_aesthetic_head(str(resolve_file(self.head_source, self.name)), self.name).to(device)
        self.device = device

    @torch.inference_mode()
    def score(self, batch: FeatureBatch) -> np.ndarray:
        embeddings = torch.nn.functional.normalize(batch.image_embeds.float(), dim=-1).to(self.device)
        if embeddings.shape[-1] != self.head.layers[0].in_features:
            raise ModelFileError(
                f"scorer '{self.name}': the backbone gives {embeddings.shape[-1]}-dim embeddings but the head "
                f"expects {self.head.layers[0].in_features}; use the CLIP model the head was trained on.")
        return self.head(embeddings).squeeze(-1).cpu().numpy().astype(np.float64)
