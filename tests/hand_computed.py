"""Reference computations written out by hand, for tests that check scorers against them."""

from __future__ import annotations

from collections.abc import Sequence

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


def parity(name: str, ours: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray
           ) -> tuple[float, float]:
    """Max absolute and relative difference of ``ours`` from ``reference``, printed as one line (shown with
    ``pytest -s``) so the parity figures of every scorer can be read off one test run."""
    ours_array, reference_array = np.asarray(ours, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    absolute = np.abs(ours_array - reference_array)
    relative = absolute / np.maximum(np.abs(reference_array), np.finfo(np.float64).tiny)
    print(f"\nparity {name}: n={absolute.size} max|Δ|={absolute.max():.3g} max|Δ|/|ref|={relative.max():.3g}")
    return float(absolute.max()), float(relative.max())
