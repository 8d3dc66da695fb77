"""The ImageReward backbone (``imagereward``), rebuilt on transformers' BLIP classes.

ImageReward's own package (THUDM/ImageReward) does not import with transformers 5, so the model is
restated here: ``ImageReward/ImageReward.py`` is BLIP's ViT (``models/BLIP/vit.py``, 'large': width 1024,
24 blocks, patch 16, 224 px, LayerNorm eps 1e-6) whose output tokens the BLIP text encoder
(``models/BLIP/med.py``, a BERT with cross-attention; sizes from ``med_config.json``) attends to while
encoding the prompt; the [CLS] output goes through an MLP (768→1024→128→64→16→1, no activations) and the
reward is normalised with the reference's constants, (r − 0.16717362830052426) / 1.0333394966054072.
transformers' ``BlipVisionModel`` and ``BlipTextModel`` are ports of exactly these modules; only the
parameter names differ, and ``reference_to_ours`` maps the released ``ImageReward.pt`` state dict onto
them (unused keys such as ``blip.vision_proj`` are ignored, as the reference's ``strict=False`` does; every
key our modules need must be present).

Files: a folder (default: the hub repo ``THUDM/ImageReward``) with ``ImageReward.safetensors`` or
``ImageReward.pt`` and ``med_config.json``. The ``.pt`` is a pickle: it is read only with
``allow_pickle = true``, then with ``torch.load(weights_only=True)``; ``ckptbench convert`` makes a
safetensors copy once. The tokenizer is BERT's uncased WordPiece vocabulary: from the folder when it holds
one (``vocab.txt`` or ``tokenizer.json``), else from ``bert-base-uncased`` as the reference's
``init_tokenizer`` takes it. Preprocessing as the reference's ``_transform(224)``: bicubic resize of the
shorter side, centre crop, ``ToTensor``, OpenAI CLIP mean/std (we convert to RGB before resizing; for RGB
images that is the same). Prompts are tokenized to exactly 35 tokens (padded or truncated, [CLS] … [SEP]).
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from torchvision import transforms
from transformers import AutoTokenizer, BlipTextConfig, BlipVisionConfig
from transformers.models.blip.modeling_blip import BlipVisionModel
from transformers.models.blip.modeling_blip_text import BlipTextModel

from ckptbench.errors import ModelFileError, WeightsUnavailableError
from ckptbench.hashing import DigestCache, sha256_file
from ckptbench.metrics.aesthetic import AestheticHead
from ckptbench.metrics.base import BackboneRequest, BackboneSpec
from ckptbench.metrics.weights import resolve_folder
from ckptbench.models.safety import check_pickle_allowed, load_pickle_tensors

KIND = "imagereward"
REWARD_MEAN = 0.16717362830052426  # ImageReward.py: the reward's mean and std on its training data
REWARD_STD = 1.0333394966054072
MAX_TOKENS = 35  # ImageReward.py tokenizes with padding="max_length", truncation=True, max_length=35
DEFAULT_TOKENIZER = "bert-base-uncased"
WEIGHT_FILES = ("ImageReward.safetensors", "ImageReward.pt")
MED_CONFIG = "med_config.json"
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)
_VIT_HEAD_WIDTH = 64  # BLIP's create_vit: 12 heads of 64 for 'base' (768), 16 of 64 for 'large' (1024)
_BLOCK_RENAMES = {"norm1": "layer_norm1", "attn.qkv": "self_attn.qkv", "attn.proj": "self_attn.projection",
                  "norm2": "layer_norm2", "mlp.fc1": "mlp.fc1", "mlp.fc2": "mlp.fc2"}
_BLOCK_KEY = re.compile(r"blip\.visual_encoder\.blocks\.(\d+)\.(norm1|attn\.qkv|attn\.proj|norm2|mlp\.fc1|mlp\.fc2)"
                        r"\.(weight|bias)")
_VISION_RENAMES = {"blip.visual_encoder.cls_token": "vision.embeddings.class_embedding",
                   "blip.visual_encoder.pos_embed": "vision.embeddings.position_embedding",
                   "blip.visual_encoder.patch_embed.proj.weight": "vision.embeddings.patch_embedding.weight",
                   "blip.visual_encoder.patch_embed.proj.bias": "vision.embeddings.patch_embedding.bias",
                   "blip.visual_encoder.norm.weight": "vision.post_layernorm.weight",
                   "blip.visual_encoder.norm.bias": "vision.post_layernorm.bias"}


class ImageRewardModel(nn.Module):
    """BLIP vision tower, BLIP text encoder with cross-attention, reward MLP."""

    def __init__(self, vision_config: BlipVisionConfig, text_config: BlipTextConfig) -> None:
        super().__init__()
        self.vision = BlipVisionModel(vision_config)
        self.text = BlipTextModel(text_config, add_pooling_layer=False)
        self.head = AestheticHead(text_config.hidden_size, relu=False)  # the same MLP layout, no activations

    def forward(self, pixel_values: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
                ) -> torch.Tensor:
        image_tokens = self.vision(pixel_values=pixel_values).last_hidden_state
        image_mask = torch.ones(image_tokens.shape[:-1], dtype=torch.long, device=image_tokens.device)
        text = self.text(input_ids=input_ids, attention_mask=attention_mask, encoder_hidden_states=image_tokens,
                         encoder_attention_mask=image_mask)
        reward = self.head(text.last_hidden_state[:, 0, :].float()).squeeze(-1)
        return (reward - REWARD_MEAN) / REWARD_STD


def reference_to_ours(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The released state dict's keys (``blip.visual_encoder.*``, ``blip.text_encoder.*``, ``mlp.*``) renamed
    to ``ImageRewardModel``'s; keys the model does not use are left out."""
    ours: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key in _VISION_RENAMES:
            ours[_VISION_RENAMES[key]] = value
        elif match := _BLOCK_KEY.fullmatch(key):
            block, module, kind = match.groups()
            ours[f"vision.encoder.layers.{block}.{_BLOCK_RENAMES[module]}.{kind}"] = value
        elif key.startswith("blip.text_encoder.") and not key.endswith("position_ids"):
            ours["text." + key.removeprefix("blip.text_encoder.")] = value
        elif key.startswith("mlp.layers."):
            ours["head." + key.removeprefix("mlp.")] = value
    return ours


def vision_config(state: dict[str, torch.Tensor]) -> BlipVisionConfig:
    """BLIP ViT sizes read from the weights (the reference hard-codes 'large'; head width is 64 in BLIP)."""
    try:
        width = int(state["blip.visual_encoder.cls_token"].shape[-1])
        patch = int(state["blip.visual_encoder.patch_embed.proj.weight"].shape[-1])
        positions = int(state["blip.visual_encoder.pos_embed"].shape[1])
        intermediate = int(state["blip.visual_encoder.blocks.0.mlp.fc1.weight"].shape[0])
    except KeyError as missing:
        raise ModelFileError(f"the ImageReward weights lack {missing}; give the released ImageReward.pt (or its "
                             "safetensors copy).") from None
    blocks = len({key.split(".")[3] for key in state if key.startswith("blip.visual_encoder.blocks.")})
    return BlipVisionConfig(hidden_size=width, intermediate_size=intermediate, num_hidden_layers=blocks,
                            num_attention_heads=max(1, width // _VIT_HEAD_WIDTH), patch_size=patch,
                            image_size=patch * math.isqrt(positions - 1), layer_norm_eps=1e-6, hidden_act="gelu")


def text_config(med_config: dict[str, Any], encoder_width: int) -> BlipTextConfig:
    """BLIP's med_config.json (a BertConfig with cross-attention) as transformers' BlipTextConfig."""
    keys = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
            "max_position_embeddings", "hidden_act", "layer_norm_eps", "pad_token_id")
    # is_decoder builds the cross-attention layers; the model is still run bidirectionally (is_decoder=False
    # in forward), as med.py's BertModel runs in the reference.
    return BlipTextConfig(**{key: med_config[key] for key in keys if key in med_config},
                          encoder_hidden_size=encoder_width, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0, is_decoder=True,
                          bos_token_id=None, eos_token_id=None, sep_token_id=None)  # nothing is generated


def _weights_file(folder: Path, scorer: str) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    raise WeightsUnavailableError(f"scorer '{scorer}': {folder} has neither {' nor '.join(WEIGHT_FILES)}; give the "
                                  f"THUDM/ImageReward folder as [scorers.{scorer}] model.")


def _tokenizer_folder(folder: Path, request: BackboneRequest, scorer: str) -> Path:
    if any((folder / name).is_file() for name in TOKENIZER_FILES):
        return folder
    return resolve_folder(request.processor or DEFAULT_TOKENIZER, scorer)


def resolve(request: BackboneRequest, dtype: str, scorer: str, cache: DigestCache | None) -> BackboneSpec:
    """Find the weights, ``med_config.json`` and tokenizer, check the pickle opt-in, hash all three."""
    source = Path(request.model).expanduser()
    folder = source.parent if source.is_file() else resolve_folder(request.model, scorer)
    weights = source if source.is_file() else _weights_file(folder, scorer)
    if weights.suffix != ".safetensors":
        check_pickle_allowed(weights, request.allow_pickle, f"set [scorers.{scorer}] allow_pickle = true")
    if not (folder / MED_CONFIG).is_file():
        raise WeightsUnavailableError(f"scorer '{scorer}': {folder} has no {MED_CONFIG} (the BLIP text encoder's "
                                      f"config, beside ImageReward.pt in THUDM/ImageReward); put it there.")
    tokenizer = _tokenizer_folder(folder, request, scorer)
    vocabulary = next(tokenizer / name for name in TOKENIZER_FILES if (tokenizer / name).is_file())
    files = {weights.name: sha256_file(weights, cache), MED_CONFIG: sha256_file(folder / MED_CONFIG, cache),
             f"tokenizer/{vocabulary.name}": sha256_file(vocabulary, cache)}
    preprocessing = ("resize shorter side to the ViT size (PIL bicubic), center crop, to tensor, normalise "
                     f"mean={list(OPENAI_MEAN)} std={list(OPENAI_STD)}; prompt: BERT uncased WordPiece, "
                     f"[CLS] … [SEP] padded/truncated to {MAX_TOKENS} tokens")
    return BackboneSpec(kind=KIND, source=request.model, location=str(weights), weights=files, dtype=dtype,
                        preprocessing=preprocessing,
                        config={"max_tokens": MAX_TOKENS, "reward_mean": REWARD_MEAN, "reward_std": REWARD_STD},
                        paths={"med_config": str(folder / MED_CONFIG), "tokenizer": str(tokenizer)},
                        cache_features=False)


def load_reference_state(path: Path) -> dict[str, torch.Tensor]:
    """The released state dict (safetensors, or the opted-in pickle read with weights_only=True)."""
    if path.suffix == ".safetensors":
        return load_file(str(path))
    tensors, _ = load_pickle_tensors(path)
    return tensors


def load_imagereward(weights: Path, med_config: Path) -> ImageRewardModel:
    state = load_reference_state(weights)
    vision = vision_config(state)
    model = ImageRewardModel(vision, text_config(json.loads(med_config.read_text()), vision.hidden_size))
    ours = reference_to_ours(state)
    missing = sorted(set(model.state_dict()) - set(ours))
    if missing:
        raise ModelFileError(f"{weights} lacks {len(missing)} of the ImageReward model's weights (first: "
                             f"{missing[0]}); give the released ImageReward.pt or its safetensors copy.")
    try:
        model.load_state_dict(ours, strict=True)
    except RuntimeError as error:
        raise ModelFileError(f"{weights} does not fit the ImageReward architecture "
                             f"({str(error).splitlines()[0]}).") from None
    return model.eval()


def preprocess(size: int) -> transforms.Compose:
    """ImageReward.py's ``_transform``: bicubic shorter-side resize, centre crop, to tensor, CLIP mean/std."""
    return transforms.Compose([
        transforms.Resize(size, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(size),
        transforms.ToTensor(), transforms.Normalize(OPENAI_MEAN, OPENAI_STD)])


class BertTokenCounter:
    """Tokens of a prompt with [CLS] and [SEP], as ImageReward's tokenizer counts them (it keeps 35)."""

    def __init__(self, spec: BackboneSpec) -> None:
        self.tokenizer = AutoTokenizer.from_pretrained(spec.paths["tokenizer"])
        self.context_length = MAX_TOKENS

    def __call__(self, text: str) -> int:
        return len(self.tokenizer(text, truncation=False)["input_ids"])


class ImageRewardBackbone:
    """The whole ImageReward model: it reads image and prompt together (``score_pairs``)."""

    def __init__(self, spec: BackboneSpec, device: torch.device) -> None:
        model = load_imagereward(Path(spec.location), Path(spec.paths["med_config"]))
        self._setup(model, AutoTokenizer.from_pretrained(spec.paths["tokenizer"]), device, spec.dtype)
        self.spec = spec

    @classmethod
    def from_model(cls, model: ImageRewardModel, tokenizer: Any, device: torch.device, dtype: str = "fp32"
                   ) -> ImageRewardBackbone:
        """A backbone around a model already in memory (benchmarks of real-size random models)."""
        backbone = cls.__new__(cls)
        backbone._setup(model, tokenizer, device, dtype)
        return backbone

    def _setup(self, model: ImageRewardModel, tokenizer: Any, device: torch.device, dtype: str) -> None:
        from ckptbench.metrics.backbones import autocast

        self.device = device
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.transform = preprocess(int(self.model.vision.config.image_size))
        self.meta: dict[str, Any] = {}
        self._autocast = lambda: autocast(device, dtype)

    def embed_images(self, images: list[Image.Image], wanted: set[str]) -> dict[str, np.ndarray]:
        return {}  # nothing per image: the prompt is read together with it

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError("ImageReward reads prompt and image together; use score_pairs")

    @torch.inference_mode()
    def score_pairs(self, images: list[Image.Image], texts: list[str]) -> np.ndarray:
        pixels = torch.stack([self.transform(image.convert("RGB")) for image in images]).to(self.device)
        tokens = self.tokenizer(texts, padding="max_length", truncation=True, max_length=MAX_TOKENS,
                                return_tensors="pt")
        with self._autocast():
            rewards = self.model(pixels, tokens["input_ids"].to(self.device), tokens["attention_mask"].to(self.device))
        return rewards.float().cpu().numpy().astype(np.float64)
