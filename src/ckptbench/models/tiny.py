"""Tiny random-weight models built with the real classes and saved in the real file formats.

Used by the demo and the tests: a Stable Diffusion 1.5-architecture pipeline (UNet, VAE, CLIP text
encoder and the real CLIP BPE tokenizer) saved as a diffusers folder and as an original-layout single
``.safetensors`` file, a tiny transformers CLIP for the scorers, and an aesthetic head in the LAION
``.pth`` format. The weights are random: numbers computed with them only show the machinery works.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
from safetensors.torch import save_file
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextConfig, CLIPTextModel

from ckptbench.models.ldm_layout import pipeline_to_ldm
from ckptbench.models.tokenizer import clip_tokenizer

BUNDLED_CONFIGS = Path(__file__).parent / "configs"

TINY_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [32, 64, 64, 64],
    "layers_per_block": 2,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "cross_attention_dim": 32,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}
TINY_VAE = {
    "sample_size": 64,
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": [32, 32, 64, 64],
    "layers_per_block": 1,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "norm_num_groups": 32,
}
TINY_TEXT = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_attention_heads": 4,
    "num_hidden_layers": 3,
    "max_position_embeddings": 77,
    "vocab_size": 49408,
    "projection_dim": 32,
    "hidden_act": "quick_gelu",
    "bos_token_id": 0,
    "eos_token_id": 2,
    "pad_token_id": 1,
}


def tiny_sd15_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """A random SD1.5-architecture pipeline small enough to run 64×64 images on a CPU in a second."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**TINY_UNET)
    vae = AutoencoderKL(**TINY_VAE)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT))
    _trained_looking_final_norm(text_encoder)
    scheduler_config = json.loads((BUNDLED_CONFIGS / "sd15/scheduler/scheduler_config.json").read_text())
    scheduler = PNDMScheduler.from_config(scheduler_config)
    pipeline = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=clip_tokenizer(), scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    return pipeline.to(torch.float32)


def _trained_looking_final_norm(text_encoder: CLIPTextModel) -> None:
    """Give the final layer norm a non-zero bias, as trained CLIP encoders have.

    A freshly initialised LayerNorm (weight 1, bias 0) makes the prompt embeddings average exactly 0,
    and A1111's emphasis, which rescales to restore that average, would then divide 0 by 0.
    """
    final = getattr(text_encoder, "final_layer_norm", None) or text_encoder.text_model.final_layer_norm
    with torch.no_grad():
        final.weight.copy_(1.0 + 0.1 * torch.randn_like(final.weight))
        final.bias.copy_(-0.2 + 0.1 * torch.randn_like(final.bias))


def save_diffusers_folder(pipeline: StableDiffusionPipeline, folder: Path) -> Path:
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def save_single_file(pipeline: StableDiffusionPipeline, path: Path, dtype: torch.dtype = torch.float32,
                     extras: dict[str, torch.Tensor] | None = None) -> Path:
    """Save in the original CompVis/A1111 key layout, as checkpoints are shared on Civitai."""
    state = {key: tensor.to(dtype) for key, tensor in
             pipeline_to_ldm(pipeline.unet, pipeline.vae, pipeline.text_encoder).items()}
    state.update(extras or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt"})
    return path


def save_config_folder(pipeline: StableDiffusionPipeline, folder: Path) -> Path:
    """The diffusers config of a pipeline without its weights: what single-file loading needs."""
    staging = folder.with_name(folder.name + ".weights-tmp")
    pipeline.save_pretrained(staging, safe_serialization=True)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for source in staging.rglob("*"):
        if source.is_file() and source.suffix in (".json", ".txt"):
            target = folder / source.relative_to(staging)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shutil.rmtree(staging)
    return folder


def tiny_clip_model(seed: int = 0, projection_dim: int = 768, image_size: int = 32) -> CLIPModel:
    """A random CLIP with the real text vocabulary; projection 768 wide like ViT-L/14, so real heads fit."""
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={**TINY_TEXT, "projection_dim": projection_dim},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4,
                       "num_hidden_layers": 2, "image_size": image_size, "patch_size": 8,
                       "projection_dim": projection_dim, "hidden_act": "quick_gelu"},
        projection_dim=projection_dim,
    )
    return CLIPModel(config).eval()


def save_tiny_clip(folder: Path, seed: int = 0, projection_dim: int = 768, image_size: int = 32) -> Path:
    """A tiny CLIP folder laid out like ``openai/clip-vit-large-patch14`` (model, processor, tokenizer)."""
    model = tiny_clip_model(seed, projection_dim, image_size)
    model.save_pretrained(folder, safe_serialization=True)
    CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size},
        image_mean=[0.48145466, 0.4578275, 0.40821073], image_std=[0.26862954, 0.26130258, 0.27577711],
    ).save_pretrained(folder)
    clip_tokenizer().save_pretrained(folder)
    return folder


def save_tiny_aesthetic_head(path: Path, seed: int = 0, embedding_dim: int = 768) -> Path:
    """A random head in the improved-aesthetic-predictor ``linearMSE`` layout, saved as its ``.pth``."""
    generator = torch.Generator().manual_seed(seed)
    widths = [embedding_dim, 1024, 128, 64, 16, 1]
    indices = [0, 2, 4, 6, 7]  # positions of the Linear layers in the original nn.Sequential
    state: dict[str, torch.Tensor] = {}
    for index, (fan_in, fan_out) in zip(indices, itertools.pairwise(widths), strict=True):
        bound = 1 / fan_in**0.5
        state[f"layers.{index}.weight"] = (torch.rand(fan_out, fan_in, generator=generator) * 2 - 1) * bound
        state[f"layers.{index}.bias"] = (torch.rand(fan_out, generator=generator) * 2 - 1) * bound
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path
