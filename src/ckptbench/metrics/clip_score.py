"""Prompt adherence: ``clip-score`` (100 · max(cos, 0)) and ``clip-cosine`` (the raw cosine).

Reference definition of ``clip-score``: Hessel et al. 2021 as implemented by torchmetrics ``CLIPScore``
— cosine similarity of the CLIP image and text embeddings, scaled by 100 and clamped at 0 (torchmetrics
clamps the batch mean; we clamp each image so every image has its own score, which equals torchmetrics
on a batch of one). ``clip-cosine`` is the unscaled, unclamped cosine that GhostReview reports as
"ClipScore" (≈0.2–0.35). The text is the prompt with A1111 syntax stripped. The default model is
OpenAI CLIP ViT-L/14, as in torchmetrics and GhostReview.

Prompts longer than the text encoder's context (77 tokens) are truncated as OpenAI CLIP's
``clip.tokenize(truncate=True)`` does — start token, the first 75 tokens, end token — and counted per
suite and reported. Here we depart from torchmetrics on purpose: it slices the token ids to 77, which
drops the end token, and CLIP's pooled text embedding is read at the end token; without one it is read at
position 0, the start token, whose (causal) embedding is the same for every prompt, so torchmetrics
scores every over-long prompt against one and the same text embedding. Within 77 tokens the two agree.
"""

from __future__ import annotations

import numpy as np
import torch

from ckptbench.metrics.base import FeatureBatch, ImageScorer
from ckptbench.prompt import strip_prompt_syntax


def cosine(image_embeds: torch.Tensor, text_embeds: torch.Tensor) -> torch.Tensor:
    image = torch.nn.functional.normalize(image_embeds.double(), dim=-1)
    text = torch.nn.functional.normalize(text_embeds.double(), dim=-1)
    return (image * text).sum(-1)


class ClipScore(ImageScorer):
    """100 · max(cos, 0) between CLIP image and prompt embeddings (Hessel et al.; long prompts as OpenAI CLIP)."""

    name = "clip-score"
    default_model = "openai/clip-vit-large-patch14"
    needs_prompt = True

    def text_for(self, prompt: str) -> str:
        return strip_prompt_syntax(prompt)

    def score(self, batch: FeatureBatch) -> np.ndarray:
        assert batch.text_embeds is not None
        return (100.0 * cosine(batch.image_embeds, batch.text_embeds).clamp(min=0)).numpy()


class ClipCosine(ClipScore):
    """The raw cosine between CLIP image and prompt embeddings (GhostReview's "ClipScore")."""

    name = "clip-cosine"

    def score(self, batch: FeatureBatch) -> np.ndarray:
        assert batch.text_embeds is not None
        return cosine(batch.image_embeds, batch.text_embeds).numpy()
