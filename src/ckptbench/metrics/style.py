"""Style scorers against reference images: ``style-gram``, ``style-gram:ghostreview`` and ``style-clip``.

``style-gram`` — the Gatys et al. style loss: VGG19 (ImageNet weights) Gram matrices at conv1_1, conv2_1,
conv3_1, conv4_1 and conv5_1 (rectified responses), each normalised by C·H·W; loss between an image and
one reference = Σ over layers of mean((G − A)²); an image's score is the mean of that loss over every
reference image of its style (or LoRA). Lower is better.

``style-gram:ghostreview`` — GhostReview's number, for comparability: the same five layers, G = F·Fᵀ with
no normalisation, on the maps its notebook really used — rectified (post-ReLU) at conv1_1…conv4_1,
because torchvision's in-place ReLU overwrites the layer outputs the notebook keeps, and the raw conv
output only at conv5_1, where its loop stops before the ReLU (GhostReview's write-up says "conv outputs"
at every layer; the code does this). Its values (≈1e9–1e10 with ImageNet weights at 512×512) depend on
image size and layer widths; prefer ``style-gram``. Version 2: version 1 used pre-ReLU maps at all five
layers, 2.3× off GhostReview's published losses.

``style-gram`` follows its own documented definition above (Gatys et al.: rectified maps, Gram / C·H·W)
and is not a rescaling of GhostReview's number: the two differ in normalisation and, at conv5_1, in the
map used, so neither can be converted into the other.

The mean over references is computed exactly from a summary of the reference set, computed once per set
and cached: per layer, the mean Gram Ā and the spread s = mean_r mean((A_r − Ā)²), since
mean_r mean((G − A_r)²) = mean((G − Ā)²) + s. (In float64; this avoids the cancellation the expanded
form ‖G‖² − 2⟨G, Ā⟩ + … would suffer at GhostReview's magnitudes.)

``style-clip`` — cosine between an image's CLIP image embedding and the mean of its references'
L2-normalised CLIP image embeddings. Cheap (it shares the CLIP backbone with the other CLIP heads);
higher is better.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from ckptbench.metrics.base import FeatureBatch, ImageScorer
from ckptbench.metrics.vgg import TORCHVISION_SOURCE, split_layers


def summarize_grams(grams: np.ndarray, channels: list[int]) -> dict[str, np.ndarray]:
    """Mean Gram (flat, float64) and per-layer spread of a reference set's Grams (R, Σ C²)."""
    stacked = grams.astype(np.float64)
    mean = stacked.mean(axis=0)
    spread = np.array([float(np.mean((layer - layer_mean) ** 2))
                       for layer, layer_mean in zip(split_layers(stacked, channels), split_layers(mean, channels),
                                                    strict=True)])
    return {"mean": mean, "spread": spread}


def gram_loss(grams: np.ndarray, summary: dict[str, np.ndarray], channels: list[int]) -> float:
    """Mean over the references of Σ_layers mean((G − A_r)²) for one image's Grams (Σ C²,)."""
    image = grams.astype(np.float64)
    total = 0.0
    for layer, mean, spread in zip(split_layers(image, channels), split_layers(summary["mean"], channels),
                                   summary["spread"], strict=True):
        total += float(np.mean((layer - mean) ** 2)) + float(spread)
    return total


class StyleGram(ImageScorer):
    """Gatys style loss (normalised Gram matrices of VGG19 ReLU responses), mean over the references."""

    name = "style-gram"
    default_model = TORCHVISION_SOURCE
    needs_references = True
    features: ClassVar[tuple[str, ...]] = ("gram_relu",)
    uses_meta = True

    def summarize_references(self, features: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, np.ndarray]:
        return summarize_grams(features[self.features[0]], meta["channels"])

    def score(self, batch: FeatureBatch) -> np.ndarray:
        assert batch.references is not None
        grams = batch.features[self.features[0]].numpy()
        channels = batch.meta["channels"]
        return np.array([gram_loss(row, summary, channels)
                         for row, summary in zip(grams, batch.references, strict=True)])


class StyleGramGhostReview(StyleGram):
    """GhostReview's unnormalised style loss (G = F·Fᵀ of relu1_1…relu4_1 and conv5_1), mean over the references."""

    name = "style-gram:ghostreview"
    features: ClassVar[tuple[str, ...]] = ("gram_ghostreview",)


class StyleClip(ImageScorer):
    """Cosine between the image's CLIP embedding and the mean normalised CLIP embedding of its references."""

    name = "style-clip"
    default_model = "openai/clip-vit-large-patch14"
    needs_references = True

    def summarize_references(self, features: dict[str, np.ndarray], meta: dict[str, Any]) -> dict[str, np.ndarray]:
        embeddings = features["image"].astype(np.float64)
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
        return {"mean": embeddings.mean(axis=0)}

    def score(self, batch: FeatureBatch) -> np.ndarray:
        assert batch.references is not None
        means = torch.from_numpy(np.stack([summary["mean"] for summary in batch.references]))
        image = torch.nn.functional.normalize(batch.image_embeds.double(), dim=-1)
        return (image * torch.nn.functional.normalize(means, dim=-1)).sum(-1).numpy()
