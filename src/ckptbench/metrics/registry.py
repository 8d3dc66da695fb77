"""Scorers by id (``name`` or ``name:tag``): every scorer's public identity, declared here and only here.

This module imports nothing heavy: listing scorers (``ckptbench scorers``) and checking a spec's scorer
names (``ckptbench validate``) read the entries below and never import torch, transformers, open_clip or
torchvision. A scorer's class is imported when it is used (``ScorerEntry.load``), the way open_clip keeps
model configs as data and builds the model on request.

How to register a scorer
------------------------
1. Write its class in a module of ``ckptbench.metrics`` (one module per scorer family), subclassing
   ``ImageScorer`` or ``SetScorer`` (``metrics/base.py``). In the class body set ``name`` (the id below)
   and what the scorer *does*: ``default_model``, ``features``, ``needs_prompt``, ``needs_references``,
   ``uses_meta``, ``load``, ``score`` / ``score_set``, ``head_files``, ``extra_identity`` …
2. Add one ``ScorerEntry`` to ``ENTRIES`` below with its identity: ``target`` (``"module:Class"`` inside
   ``ckptbench.metrics``), ``version``, ``level``, ``backbone`` kind, ``default_weights`` (the text
   ``ckptbench scorers`` shows), ``higher_is_better``, ``scale`` and ``description``.

Do not repeat those identity fields in the class: ``ScorerBase.__init_subclass__`` copies them from the
entry onto the class when the class is defined (so ``cls.version`` etc. keep working) and refuses a class
that declares one itself, or whose ``level`` differs from the entry's. To change what a scorer computes,
bump its ``version`` here: the version is part of every score key, so stored scores are recomputed.

Keep scorer modules' heavy imports (torch, transformers, open_clip, torchvision, scipy …) in those
modules, never here; ``tests/test_import_budget.py`` fails when a command imports what it does not use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from ckptbench.errors import SpecError
from ckptbench.textfiles import closest

if TYPE_CHECKING:
    from ckptbench.metrics.base import ScorerBase
    from ckptbench.spec import BenchmarkSpec, ScorerOptions

# The fields of ``ScorerEntry`` that scorer classes receive from it (and must not declare themselves).
IDENTITY_FIELDS = ("version", "backbone_kind", "higher_is_better", "scale", "description")


@dataclass(frozen=True)
class ScorerEntry:
    name: str
    target: str  # "module:Class", the module inside ckptbench.metrics
    version: str
    level: Literal["image", "set"]
    backbone_kind: str  # the backbone kind the scorer's features come from (metrics/backbones.py)
    default_weights: str  # what is loaded when the spec names no weights, as ``ckptbench scorers`` lists it
    higher_is_better: bool
    scale: str
    description: str

    def load(self) -> type[ScorerBase]:
        """The scorer's class (its module is imported now)."""
        module, _, attribute = self.target.partition(":")
        cls: type[ScorerBase] = getattr(importlib.import_module(f"ckptbench.metrics.{module}"), attribute)
        return cls


_CLIP_L = "openai/clip-vit-large-patch14"
_HPS_SCALE = "cosine of HPS-tuned ViT-H-14 features, ≈0.2–0.35 (compare within a prompt)"
_KENJIQQ_WEIGHTS = ("CLIP named by the head file (laion/CLIP-ViT-L-14-laion2B-s32B-b82K for ViT-L/14 heads) + head "
                    "aesthetics_scorer_{}_openclip_vit_l_14.pth (required, no hub copy)")
_INCEPTION = "torch-hub:pt_inception-2015-12-05"

ENTRIES: tuple[ScorerEntry, ...] = (
    ScorerEntry(
        "laion-aesthetic-v2", "aesthetic:LaionAestheticV2", "1", "image", "hf-clip",
        f"{_CLIP_L} + head hf:camenduru/improved-aesthetic-predictor/sac+logos+ava1-l14-linearMSE.pth", True,
        "AVA rating scale, ≈1–10 (typical SD images 4–7)",
        "LAION improved-aesthetic-predictor MLP on the L2-normalised CLIP ViT-L/14 image embedding"),
    ScorerEntry(
        "kenjiqq-rating", "kenjiqq:KenjiqqRating", "1", "image", "hf-clip", _KENJIQQ_WEIGHTS.format("rating"), True,
        "AI Horde rating scale, ≈1–10",
        "kenjiqq aesthetics-scorer rating head on the L2-normalised pooled CLIP vision output"),
    ScorerEntry(
        "kenjiqq-artifacts", "kenjiqq:KenjiqqArtifacts", "1", "image", "hf-clip", _KENJIQQ_WEIGHTS.format("artifacts"),
        False, "AI Horde artifact scale, ≈1–5 (lower is better)",
        "kenjiqq aesthetics-scorer artifacts head on the L2-normalised pooled CLIP vision output"),
    ScorerEntry(
        "clip-score", "clip_score:ClipScore", "1", "image", "hf-clip", _CLIP_L, True,
        "0–100 (100 · cosine; typical SD images 20–35 with ViT-L/14)",
        "CLIPScore: 100 · max(cos(image, text), 0), prompt stripped of A1111 syntax"),
    ScorerEntry(
        "clip-cosine", "clip_score:ClipCosine", "1", "image", "hf-clip", _CLIP_L, True,
        "cosine, −1–1 (typical SD images 0.2–0.35 with ViT-L/14); not comparable to clip-score",
        "raw cosine of CLIP image and prompt embeddings (GhostReview's ClipScore), no scaling or clamp"),
    ScorerEntry(
        "hps-v2", "preference:HPSv2", "2", "image", "open-clip",
        "open_clip ViT-H-14 + checkpoint hf:xswu/HPSv2/HPS_v2_compressed.pt", True, _HPS_SCALE,
        "Human Preference Score v2.0 (open_clip ViT-H-14 + HPS_v2_compressed.pt), cosine"),
    ScorerEntry(
        "hps-v2.1", "preference:HPSv21", "2", "image", "open-clip",
        "open_clip ViT-H-14 + checkpoint hf:xswu/HPSv2/HPS_v2.1_compressed.pt", True, _HPS_SCALE,
        "Human Preference Score v2.1 (open_clip ViT-H-14 + HPS_v2.1_compressed.pt), cosine"),
    ScorerEntry(
        "pickscore", "preference:PickScore", "1", "image", "hf-clip",
        "yuvalkirstain/PickScore_v1 (processor laion/CLIP-ViT-H-14-laion2B-s32B-b79K)", True,
        "logit_scale · cosine, ≈18–23 (compare within a prompt)",
        "PickScore v1 (CLIP-H fine-tune): logit_scale · cos(image, prompt)"),
    ScorerEntry(
        "style-gram", "style:StyleGram", "1", "image", "vgg19", "torchvision:vgg19", False,
        "Σ over 5 layers of mean squared Gram difference (Grams / C·H·W); ≥ 0, 0 = identical style",
        "VGG19 Gram-matrix style loss (relu1_1…relu5_1, Gram / C·H·W) against the case's references"),
    ScorerEntry(
        "style-gram:ghostreview", "style:StyleGramGhostReview", "2", "image", "vgg19", "torchvision:vgg19", False,
        "GhostReview units: Σ over 5 layers of mean squared unnormalised Gram difference (≈1e9–1e10)",
        "GhostReview's style loss: VGG19 relu1_1…relu4_1 and conv5_1 (before its ReLU), unnormalised Gram F·Fᵀ"),
    ScorerEntry(
        "style-clip", "style:StyleClip", "1", "image", "hf-clip", _CLIP_L, True,
        "cosine, −1–1 (higher = closer to the references)",
        "cosine of the CLIP image embedding with the mean normalised embedding of the references"),
    ScorerEntry(
        "kid", "distribution:KID", "2", "set", "fid-inception", _INCEPTION, False,
        "MMD² of Inception features (raw, not ×1000); ≈0 for the same distribution",
        "Kernel Inception Distance (polynomial kernel, 100 subsets, clean-fid resizing)"),
    ScorerEntry(
        "fid", "distribution:FID", "2", "set", "fid-inception", _INCEPTION, False,
        "Fréchet distance of Inception feature Gaussians; 0 = same statistics",
        "Fréchet Inception Distance (float64 mean/covariance, clean-fid resizing)"),
    ScorerEntry(
        "cmmd", "distribution:CMMD", "1", "set", "hf-clip", "openai/clip-vit-large-patch14-336", False,
        "1000 · MMD² (Gaussian kernel σ = 10) of normalised CLIP embeddings; 0 = same distribution",
        "CMMD: MMD of L2-normalised CLIP image embeddings, RBF σ = 10, ×1000"),
    ScorerEntry(
        "imagereward", "imagereward:ImageReward", "1", "image", "imagereward",
        "THUDM/ImageReward (ImageReward.pt + med_config.json; tokenizer bert-base-uncased)", True,
        "standardised reward, ≈ −2…2 (0 = ImageReward's average training image; compare within a prompt)",
        "ImageReward v1.0 (BLIP ViT-L + BERT cross-attention + MLP), normalised reward"),
    ScorerEntry(
        "vqascore", "vqascore:VQAScore", "1", "image", "vqa", "Qwen/Qwen2.5-VL-7B-Instruct", True,
        "probability 0–1 that the model answers 'Yes' to 'Does this figure show \"{prompt}\"?'",
        "VQAScore: P(Yes | image, 'Does this figure show \"prompt\"? Please answer yes or no.')"),
)

SCORERS: dict[str, ScorerEntry] = {entry.name: entry for entry in ENTRIES}


def scorer_entry(name: str) -> ScorerEntry:
    """The registered entry of ``name``; an unknown name is a ``SpecError`` with 'did you mean'."""
    if name in SCORERS:
        return SCORERS[name]
    close = closest(name, SCORERS, cutoff=0.5)
    hint = f"did you mean '{close}'? " if close else ""
    raise SpecError(f"unknown scorer '{name}'; {hint}known scorers: {', '.join(sorted(SCORERS))}.")


def scorer_class(name: str) -> type[ScorerBase]:
    return scorer_entry(name).load()


def create_scorer(name: str, options: ScorerOptions) -> ScorerBase:
    return scorer_class(name)(options)


def check_scorer_names(spec: BenchmarkSpec) -> None:
    where = f"{spec.spec_path}: scorers.use: " if spec.spec_path else ""
    for name in spec.scorers.use:
        try:
            scorer_entry(name)
        except SpecError as error:
            raise SpecError(where + str(error)) from None
