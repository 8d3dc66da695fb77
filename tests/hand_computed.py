"""Reference computations written out by hand, for tests that check scorers against them."""

from __future__ import annotations

import numpy as np
import torch


def aesthetic_mlp(state: dict[str, torch.Tensor], embeddings: np.ndarray, indices: tuple[int, ...], relu: bool
                  ) -> np.ndarray:
    """improved-aesthetic-predictor by hand: x/‖x‖, then the Linear layers (ReLU between them for reluMSE)."""
    x = embeddings / np.linalg.norm(embeddings, axis=-1, keepdims=True)
    for position, index in enumerate(indices):
        weight = state[f"layers.{index}.weight"].double().numpy()
        bias = state[f"layers.{index}.bias"].double().numpy()
        x = x @ weight.T + bias
        if relu and position < len(indices) - 1:
            x = np.maximum(x, 0.0)
    return x[:, 0]
