"""Real-size models with random weights, built on the fly with the real classes, for the benchmarks.

The cost of a forward pass does not depend on the weights' values, so a random-weight model of the real
architecture times like the real one. Checkpoints are written as original-layout single ``.safetensors``
files (what Civitai hands out), built from ckptbench's bundled diffusers configs; CLIP scorers as a
transformers ViT-L/14 folder and an open_clip ViT-H-14 checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "ckptbench" / "models" / "configs"
CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
VIT_L_14 = {
    "text_config": {"hidden_size": 768, "intermediate_size": 3072, "num_attention_heads": 12,
                    "num_hidden_layers": 12, "projection_dim": 768, "max_position_embeddings": 77,
                    "vocab_size": 49408, "hidden_act": "quick_gelu"},
    "vision_config": {"hidden_size": 1024, "intermediate_size": 4096, "num_attention_heads": 16,
                      "num_hidden_layers": 24, "image_size": 224, "patch_size": 14, "projection_dim": 768,
                      "hidden_act": "quick_gelu"},
    "projection_dim": 768,
}


def _config(family: str, part: str) -> dict[str, Any]:
    return json.loads((CONFIGS / family / part / "config.json").read_text())


def random_pipeline(family: str, device: torch.device, dtype: torch.dtype = torch.float16) -> Any:
    """A real-size ``sd15`` or ``sdxl`` pipeline with random weights, made on ``device`` in ``dtype`` (a GPU builds
    SDXL's 3.5 billion parameters in seconds), with the bundled scheduler config and ckptbench's tokenizers."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from ckptbench.models.tokenizer import OPEN_CLIP_PAD, clip_tokenizer

    torch.manual_seed(0)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            unet = UNet2DConditionModel.from_config(_config(family, "unet"))
            vae = AutoencoderKL.from_config(_config(family, "vae"))
            text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(CONFIGS / family / "text_encoder"))
            if family == "sdxl":
                text_encoder_2 = CLIPTextModelWithProjection(
                    CLIPTextConfig.from_pretrained(CONFIGS / family / "text_encoder_2"))
    finally:
        torch.set_default_dtype(previous)
    scheduler = EulerDiscreteScheduler.from_config(
        json.loads((CONFIGS / family / "scheduler" / "scheduler_config.json").read_text()))
    if family == "sdxl":
        return StableDiffusionXLPipeline(unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                         tokenizer=clip_tokenizer(), tokenizer_2=clip_tokenizer(OPEN_CLIP_PAD),
                                         scheduler=scheduler, force_zeros_for_empty_prompt=False,
                                         add_watermarker=False)
    return StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def save_single_file(pipeline: Any, path: Path) -> Path:
    """The pipeline's weights as an fp16 original-layout single file (LDM for SD1.5, SGM for SDXL)."""
    from safetensors.torch import save_file

    from ckptbench.demo.tiny import original_layout_state

    state = {key: tensor.to("cpu", torch.float16) for key, tensor in original_layout_state(pipeline).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path.with_suffix(".tmp")), metadata={"format": "pt"})
    path.with_suffix(".tmp").rename(path)
    return path


def single_file(family: str, folder: Path, device: torch.device | None = None) -> Path:
    """A random-weight real-size ``family`` checkpoint as an fp16 single file in ``folder`` (made once)."""
    path = folder / f"{family}-random-real-size.safetensors"
    if not path.is_file():
        save_single_file(random_pipeline(family, device or torch.device("cpu")), path)
    return path


def clip_vit_l_14(folder: Path, device: torch.device | None = None) -> Path:
    """A random-weight transformers CLIP ViT-L/14 folder with its processor and tokenizer (made once)."""
    if (folder / "model.safetensors").is_file():
        return folder
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from ckptbench.models.tokenizer import clip_tokenizer

    torch.manual_seed(0)
    with torch.device(device or torch.device("cpu")):
        model = CLIPModel(CLIPConfig(**VIT_L_14)).eval()
    model.cpu().save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224},
                       image_mean=CLIP_MEAN, image_std=CLIP_STD).save_pretrained(folder)
    clip_tokenizer().save_pretrained(folder)
    return folder


def open_clip_vit_h_14(path: Path, device: torch.device | None = None) -> Path:
    """A random-weight open_clip ViT-H-14 as a full checkpoint (the HPS v2 format: the whole model's weights)."""
    if path.is_file():
        return path
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-H-14", load_weights=False, device=device or torch.device("cpu"))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}, str(path))
    return path


def random_images(folder: Path, count: int, size: int = 512) -> Path:
    """``count`` PNGs of ``size``² (smooth random colours, as compressible as photos) with a prompt each."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        if (folder / f"{index:04d}.png").is_file():
            continue
        pixels = rng.integers(0, 256, size=(size // 8, size // 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((size, size), Image.BICUBIC).save(folder / f"{index:04d}.png")
        (folder / f"{index:04d}.txt").write_text(f"a photograph of object number {index % 8}, detailed")
    return folder
