"""Tiny random-weight scorer models built with the real classes and saved in the real file formats.

For tests and the demo: an open_clip model as a folder with ``open_clip_config.json`` (the layout of
open_clip hub repos) plus an HPS-format checkpoint (``{"state_dict": …}`` ``.pt``), a kenjiqq head
(``.pth`` + ``.config`` JSON), a VGG19 in torchvision's ``features.N`` layout with narrow channels, and the
FID Inception at real size (its architecture cannot shrink). The weights are random: the numbers only
show that the machinery works.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torchvision.models.vgg import make_layers

from ckptbench.demo.tiny import random_linear_head
from ckptbench.metrics.open_clip_backbone import create_open_clip

TINY_OPEN_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 8, "patch_size": 8},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 4, "layers": 2},
}
# VGG19's layout (16 convolutions, 5 max-pools) with narrow channels; layer indices match vgg19().features.
TINY_VGG19_WIDTHS = (4, 8, 16, 16, 16)


def save_tiny_open_clip(folder: Path, seed: int = 0) -> Path:
    """A tiny open_clip model as a local folder: ``open_clip_config.json`` and ``open_clip_model.safetensors``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_OPEN_CLIP, "preprocess_cfg": {}}))
    torch.manual_seed(seed)
    model = create_open_clip(f"local-dir:{folder}")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder


def save_hps_style_checkpoint(architecture: Path, path: Path, seed: int = 0) -> Path:
    """A random full checkpoint for the architecture folder, in HPS's ``{"state_dict": …}`` ``.pt`` format."""
    torch.manual_seed(seed)
    model = create_open_clip(f"local-dir:{architecture}")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "epoch": 1}, path)
    return path


def save_tiny_kenjiqq_head(path: Path, input_size: int, seed: int = 0, relu: bool = False,
                           sigmoid: bool = False) -> Path:
    """A random aesthetics-scorer head: ``path`` (.pth state dict) and its ``.config`` JSON file."""
    generator = torch.Generator().manual_seed(seed)
    widths = [input_size, 64, 64, 64, 64, 1]
    indices = (0, 3, 6, 9, 11) if relu else (0, 2, 4, 6, 7)
    state = random_linear_head(widths, indices, generator)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    config = {"input_size": input_size, "use_activation": relu, "dropout": 0.0, "hidden_dim": 64,
              "reduce_dims": False, "output_activation": "sigmoid" if sigmoid else None}
    path.with_suffix(".config").write_text(json.dumps(config, indent=4))
    return path


def vgg19_layout(widths: tuple[int, ...]) -> list[str | int]:
    """VGG19's configuration "E" with the given channel width per block."""
    counts = (2, 2, 4, 4, 4)
    layout: list[str | int] = []
    for width, count in zip(widths, counts, strict=True):
        layout += [width] * count + ["M"]
    return layout


def save_vgg19(path: Path, widths: tuple[int, ...] = TINY_VGG19_WIDTHS, seed: int = 0) -> Path:
    """A random VGG19 ``features`` state dict in torchvision's key layout (``features.N.weight``).

    With ``widths = (64, 128, 256, 512, 512)`` this is real-size VGG19 with torchvision's own
    initialisation (Kaiming normal, fan-out, zero bias), as ``torchvision.models.vgg19()`` builds it.
    """
    torch.manual_seed(seed)
    features = make_layers(vgg19_layout(widths))
    for module in features:
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            torch.nn.init.zeros_(module.bias)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"features.{key}": value for key, value in features.state_dict().items()}, path)
    return path


def save_random_fid_inception(path: Path, seed: int = 0) -> Path:
    """The FID Inception v3 at real size with random weights, as a plain state dict (~95 MB).

    Convolutions get Kaiming-normal weights (fan-in, ReLU gain), so activations keep their scale through
    the network: with PyTorch's default initialisation the pool3 features shrink to ≈1e-7, where KID
    underflows to 0 and no difference in the input shows.
    """
    from ckptbench.metrics.inception import fid_inception

    torch.manual_seed(seed)
    model = fid_inception()
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), path)
    return path


def save_clip_layout(folder: Path, layout: str, seed: int = 3, image_size: int = 32) -> Path:
    """The tiny CLIP of ``demo.tiny.save_tiny_clip`` in one of the folder layouts transformers reads:

    * ``"hub"`` — as on the hub (``openai/clip-vit-large-patch14``): ``preprocessor_config.json`` and the
      tokenizer as ``vocab.json`` + ``merges.txt``;
    * ``"processor"`` — as ``CLIPProcessor.save_pretrained`` writes it in transformers 5:
      ``processor_config.json`` (the image processor inside it) and ``tokenizer.json``.
    """
    from transformers import CLIPImageProcessor, CLIPProcessor

    from ckptbench.demo.tiny import tiny_clip_model
    from ckptbench.models.tokenizer import clip_tokenizer, write_clip_tokenizer_files

    folder.mkdir(parents=True, exist_ok=True)
    tiny_clip_model(seed, 768, image_size).save_pretrained(folder, safe_serialization=True)
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711])
    if layout == "hub":
        image_processor.save_pretrained(folder)
        write_clip_tokenizer_files(folder)
        (folder / "tokenizer.json").unlink(missing_ok=True)  # the BPE pair alone must suffice
    elif layout == "processor":
        CLIPProcessor(image_processor=image_processor, tokenizer=clip_tokenizer()).save_pretrained(folder)
    else:
        raise ValueError(f"unknown CLIP folder layout {layout!r}")
    return folder


# A tiny ImageReward: BLIP ViT (width 128 = 2 heads of 64, 2 blocks, 32 px in 16 px patches) and a BLIP text
# encoder (width 32, 2 layers) with the reference's MLP layout on top.
TINY_IMAGEREWARD_VISION = {"width": 128, "blocks": 2, "patch": 16, "image_size": 32, "mlp": 256}
TINY_MED_CONFIG = {"architectures": ["BertModel"], "attention_probs_dropout_prob": 0.1, "hidden_act": "gelu",
                   "hidden_dropout_prob": 0.1, "hidden_size": 32, "initializer_range": 0.02, "intermediate_size": 64,
                   "layer_norm_eps": 1e-12, "max_position_embeddings": 64, "model_type": "bert",
                   "num_attention_heads": 2, "num_hidden_layers": 2, "pad_token_id": 0, "type_vocab_size": 2,
                   "encoder_width": 768, "add_cross_attention": True}
_WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_WORDPIECE_WORDS = ["a", "the", "of", "on", "in", "and", "with", "photo", "red", "blue", "cube", "table", "dog", "cat",
                    "portrait", "old", "man", "fisherman", "lighthouse", "at", "dusk", "watercolor", "fox", "room",
                    "isometric", "cute", "corgi", "castle", ",", ".", "(", ")", ":", "<", ">"]


def save_tiny_wordpiece_tokenizer(folder: Path) -> Path:
    """A BERT uncased WordPiece tokenizer with a small vocabulary (letters as ``##`` pieces cover any word),
    saved as ``vocab.txt`` + ``tokenizer.json`` like ``bert-base-uncased``."""
    from string import ascii_lowercase, digits

    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    pieces = list(ascii_lowercase + digits) + [f"##{c}" for c in ascii_lowercase + digits]
    vocabulary = list(dict.fromkeys(_WORDPIECE_SPECIALS + _WORDPIECE_WORDS + pieces))
    (folder / "vocab.txt").write_text("\n".join(vocabulary) + "\n", encoding="utf-8")
    BertTokenizer(vocab_file=str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(folder)
    return folder


def _random_like(name: str, tensor: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Weights with a useful spread: LayerNorm scales near 1, biases and embeddings small, matrices 1/√fan-in."""
    if tensor.dtype == torch.long:
        return tensor
    noise = torch.randn(tensor.shape, generator=generator)
    if tensor.ndim == 1:
        return 1.0 + 0.1 * noise if "norm" in name.lower() and name.endswith("weight") else 0.1 * noise
    if "embed" in name or "cls_token" in name:
        return 0.5 * noise
    return noise / tensor[0].numel() ** 0.5


def save_tiny_imagereward(folder: Path, seed: int = 0, safetensors: bool = False) -> Path:
    """A random ImageReward in the released layout: ``ImageReward.pt`` (a plain state dict with the reference's
    key names — ``blip.visual_encoder.*``, ``blip.text_encoder.*``, ``blip.vision_proj``/``text_proj``,
    ``mlp.layers.*``), ``med_config.json`` and the tokenizer files; ``ImageReward.safetensors`` instead of
    the ``.pt`` when ``safetensors``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = save_tiny_wordpiece_tokenizer(folder)
    med_config = {**TINY_MED_CONFIG, "vocab_size": len((tokenizer / "vocab.txt").read_text().split())}
    (folder / "med_config.json").write_text(json.dumps(med_config, indent=2))
    generator = torch.Generator().manual_seed(seed)
    ours = random_imagereward_state(TINY_IMAGEREWARD_VISION, med_config, generator)
    vision = TINY_IMAGEREWARD_VISION
    state = _imagereward_reference_keys(ours)
    width, text_width = vision["width"], med_config["hidden_size"]
    state["blip.vision_proj.weight"] = torch.randn(8, width, generator=generator)  # unused by the score
    state["blip.vision_proj.bias"] = torch.zeros(8)
    state["blip.text_proj.weight"] = torch.randn(8, text_width, generator=generator)
    state["blip.text_proj.bias"] = torch.zeros(8)
    state["blip.text_encoder.embeddings.position_ids"] = torch.arange(med_config["max_position_embeddings"])[None]
    if safetensors:
        save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "ImageReward.safetensors"))
    else:
        torch.save(state, folder / "ImageReward.pt")
    return folder


def imagereward_model(vision: dict[str, int], med_config: dict[str, Any]) -> Any:
    """An ``ImageRewardModel`` with BLIP ViT sizes ``vision`` (width, blocks, patch, image_size, mlp) and text
    sizes ``med_config``, with transformers' default initialisation."""
    from transformers import BlipVisionConfig

    from ckptbench.metrics.imagereward_model import ImageRewardModel, text_config

    return ImageRewardModel(
        BlipVisionConfig(hidden_size=vision["width"], intermediate_size=vision["mlp"],
                         num_hidden_layers=vision["blocks"], num_attention_heads=vision["width"] // 64,
                         patch_size=vision["patch"], image_size=vision["image_size"], layer_norm_eps=1e-6),
        text_config(med_config, vision["width"])).eval()


def random_imagereward_state(vision: dict[str, int], med_config: dict[str, Any], generator: torch.Generator
                             ) -> dict[str, torch.Tensor]:
    """``imagereward_model``'s state dict with random values of a useful spread (``_random_like``)."""
    model = imagereward_model(vision, med_config)
    return {name: _random_like(name, tensor, generator) for name, tensor in model.state_dict().items()}


def _imagereward_reference_keys(ours: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``ImageRewardModel`` keys back to the released file's names (the inverse of ``reference_to_ours``)."""
    from ckptbench.metrics.imagereward_model import _BLOCK_RENAMES, _VISION_RENAMES

    vision = {value: key for key, value in _VISION_RENAMES.items()}
    blocks = {value: key for key, value in _BLOCK_RENAMES.items()}
    state: dict[str, torch.Tensor] = {}
    for key, value in ours.items():
        if key in vision:
            state[vision[key]] = value
        elif key.startswith("vision.encoder.layers."):
            _, _, _, block, *module, kind = key.split(".")
            state[f"blip.visual_encoder.blocks.{block}.{blocks['.'.join(module)]}.{kind}"] = value
        elif key.startswith("text."):
            state["blip.text_encoder." + key.removeprefix("text.")] = value
        elif key.startswith("head."):
            state["mlp." + key.removeprefix("head.")] = value
    return state
