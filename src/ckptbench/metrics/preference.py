"""Human-preference scorers: ``hps-v2``, ``hps-v2.1`` (Human Preference Score) and ``pickscore``.

Preference scores rank images *for one prompt*; their absolute level differs between prompts, so
compare checkpoints on the same prompts (the analysis does, within prompt).

HPS v2 / v2.1 — reference definition (tgxs002/HPSv2, ``hpsv2/img_score.py``): open_clip ViT-H-14 with
the HPS checkpoint loaded as its full state dict; images go through HPS's evaluation transform (longer
side resized to 224 and padded to a square with black, see ``open_clip_backbone``); the model returns
L2-normalised image and text features and the score is their dot product,
``diag(image_features @ text_features.T)``: the plain cosine, with no logit scale and no ×100 (values
≈0.2–0.35). v2.0 and v2.1 are different checkpoints and their numbers are not comparable; the HPS version
is part of the scorer id. Scorer version 2: the transform was a shorter-side resize and centre crop
before, which differs from HPS on non-square images (up to 0.068 in cosine).

PickScore — reference definition (yuvalkirstain/PickScore README): the transformers ``CLIPModel``
``yuvalkirstain/PickScore_v1`` (a CLIP-H fine-tune) with the processor of
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``; score = ``logit_scale.exp() · cos(image, text)`` (≈18–23).

The prompt is stripped of A1111 syntax (weights, LoRA tags) before tokenising, as for CLIPScore.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ckptbench.metrics.base import BackboneRequest, FeatureBatch, ImageScorer
from ckptbench.metrics.clip_score import cosine
from ckptbench.prompt import strip_prompt_syntax

HPS_REPO = "hf:xswu/HPSv2"


class _HPS(ImageScorer):
    default_model = "ViT-H-14"
    needs_prompt = True
    default_head: ClassVar[str]

    @property
    def head_source(self) -> str:
        return self.options.head or self.default_head

    def backbone_request(self) -> BackboneRequest:
        return BackboneRequest(kind=self.backbone_kind, model=self.model_source, head=self.head_source)

    def text_for(self, prompt: str) -> str:
        return strip_prompt_syntax(prompt)

    def score(self, batch: FeatureBatch) -> np.ndarray:
        assert batch.text_embeds is not None
        return cosine(batch.image_embeds, batch.text_embeds).numpy()


class HPSv2(_HPS):
    """Human Preference Score v2.0: cosine of HPS v2.0 open_clip ViT-H-14 image and prompt features."""

    name = "hps-v2"
    default_head = f"{HPS_REPO}/HPS_v2_compressed.pt"


class HPSv21(_HPS):
    """Human Preference Score v2.1: cosine of HPS v2.1 open_clip ViT-H-14 image and prompt features."""

    name = "hps-v2.1"
    default_head = f"{HPS_REPO}/HPS_v2.1_compressed.pt"


class PickScore(ImageScorer):
    """PickScore v1: logit_scale · cos of the PickScore CLIP-H image and prompt embeddings."""

    name = "pickscore"
    default_model = "yuvalkirstain/PickScore_v1"
    processor_source = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"
    needs_prompt = True
    uses_meta = True

    def backbone_request(self) -> BackboneRequest:
        return BackboneRequest(kind=self.backbone_kind, model=self.model_source, processor=self.processor_source)

    def text_for(self, prompt: str) -> str:
        return strip_prompt_syntax(prompt)

    def score(self, batch: FeatureBatch) -> np.ndarray:
        assert batch.text_embeds is not None
        return float(batch.meta["logit_scale"]) * cosine(batch.image_embeds, batch.text_embeds).numpy()
