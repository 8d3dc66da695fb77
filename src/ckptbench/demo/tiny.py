"""Tiny random-weight models built with the real classes and saved in the real file formats.

Used by the demo and the tests: Stable Diffusion 1.5-, 2.x- and SDXL-architecture pipelines (UNet, VAE,
CLIP / OpenCLIP-layout text encoders and the real CLIP BPE tokenizer) saved as diffusers folders and
as original-layout single ``.safetensors`` files (LDM layout for SD1/SD2, SGM layout for SDXL), a tiny
transformers CLIP for the scorers, and an aesthetic head in the LAION ``.pth`` format. The weights are
random: numbers computed with them only show the machinery works.
"""

from __future__ import annotations

import itertools
import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from diffusers import (
    AutoencoderKL,
    DiffusionPipeline,
    EulerDiscreteScheduler,
    PNDMScheduler,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from safetensors.torch import save_file
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
)

from ckptbench.models.checkpoint import BUNDLED_CONFIGS
from ckptbench.models.ldm_layout import (
    OPEN_CLIP_PREFIX,
    TEXT_ENCODER_PREFIX,
    VAE_PREFIX,
    pipeline_to_ldm,
    sdxl_pipeline_to_sgm,
)
from ckptbench.models.tokenizer import OPEN_CLIP_PAD, clip_tokenizer

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
# SD2: linear transformer projections and an OpenCLIP-H-style text encoder (GELU), as in the real model.
TINY_SD2_UNET = {**TINY_UNET, "use_linear_projection": True}
TINY_SD2_TEXT = {**TINY_TEXT, "hidden_act": "gelu"}
# SDXL: three levels, no attention in the first, deeper transformers lower down, and "text_time" vector
# conditioning fed by the pooled OpenCLIP-bigG embedding (projection 64) and six size/crop numbers.
TINY_SDXL_TEXT_2 = {**TINY_TEXT, "hidden_size": 64, "intermediate_size": 128, "hidden_act": "gelu",
                    "projection_dim": 64}
TINY_SDXL_UNET = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [32, 64, 64],
    "layers_per_block": 2,
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "transformer_layers_per_block": [1, 1, 2],
    "attention_head_dim": [2, 4, 4],
    "cross_attention_dim": TINY_TEXT["hidden_size"] + TINY_SDXL_TEXT_2["hidden_size"],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 8,
    "projection_class_embeddings_input_dim": 6 * 8 + TINY_SDXL_TEXT_2["projection_dim"],
    "norm_num_groups": 32,
}
TINY_SDXL_VAE = {**TINY_VAE, "scaling_factor": 0.13025, "force_upcast": True}


def tiny_sd15_pipeline(seed: int = 0) -> StableDiffusionPipeline:
    """A random SD1.5-architecture pipeline small enough to run 64×64 images on a CPU in a second."""
    return _tiny_sd_pipeline(seed, TINY_UNET, TINY_TEXT, "sd15")


def tiny_sd2_pipeline(seed: int = 0, prediction_type: str = "epsilon") -> StableDiffusionPipeline:
    """A random SD2.x-architecture pipeline: OpenCLIP-style text encoder, pad token '!' (id 0)."""
    return _tiny_sd_pipeline(seed, TINY_SD2_UNET, TINY_SD2_TEXT, "sd2", OPEN_CLIP_PAD, prediction_type=prediction_type)


def _tiny_sd_pipeline(seed: int, unet_config: dict[str, Any], text_config: dict[str, Any], family: str,
                      pad_token: str | None = None, **scheduler_options: Any) -> StableDiffusionPipeline:
    """A random StableDiffusionPipeline with the bundled scheduler config of ``family``."""
    torch.manual_seed(seed)  # then UNet, VAE, text encoder and final norm draw in this order: keep it
    unet = UNet2DConditionModel(**unet_config)
    vae = AutoencoderKL(**TINY_VAE)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text_config))
    _trained_looking_final_norm(text_encoder)
    scheduler_config = json.loads((BUNDLED_CONFIGS / family / "scheduler/scheduler_config.json").read_text())
    scheduler = PNDMScheduler.from_config(scheduler_config, **scheduler_options)
    # clip_tokenizer() without an argument is its own cache entry: call it as the rest of the code does.
    tokenizer = clip_tokenizer() if pad_token is None else clip_tokenizer(pad_token)
    pipeline = StableDiffusionPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )
    return pipeline.to(torch.float32)


def tiny_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """A random SDXL-architecture pipeline: CLIP-L + OpenCLIP-bigG-style text encoders, text_time UNet."""
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**TINY_SDXL_UNET)
    vae = AutoencoderKL(**TINY_SDXL_VAE)
    text_encoder = CLIPTextModel(CLIPTextConfig(**TINY_TEXT))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**TINY_SDXL_TEXT_2))
    _trained_looking_final_norm(text_encoder)
    _trained_looking_final_norm(text_encoder_2)
    scheduler_config = json.loads((BUNDLED_CONFIGS / "sdxl/scheduler/scheduler_config.json").read_text())
    pipeline = StableDiffusionXLPipeline(
        unet=unet, vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=clip_tokenizer(),
        tokenizer_2=clip_tokenizer(OPEN_CLIP_PAD), scheduler=EulerDiscreteScheduler.from_config(scheduler_config),
        force_zeros_for_empty_prompt=False, add_watermarker=False,
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


def save_diffusers_folder(pipeline: DiffusionPipeline, folder: Path) -> Path:
    pipeline.save_pretrained(folder, safe_serialization=True)
    return folder


def original_layout_state(pipeline: DiffusionPipeline, seed: int = 0) -> dict[str, torch.Tensor]:
    """The pipeline's weights as a Civitai single file holds them (LDM layout for SD1/SD2, SGM for SDXL).

    An SD2 file also carries what the real ones do beyond what diffusers uses: OpenCLIP's last
    transformer layer (SD2 conditions on the penultimate one), its text projection and logit scale.
    """
    if isinstance(pipeline, StableDiffusionXLPipeline):
        return sdxl_pipeline_to_sgm(pipeline.unet, pipeline.vae, pipeline.text_encoder, pipeline.text_encoder_2)
    open_clip = pipeline.text_encoder.config.hidden_act == "gelu"
    state = pipeline_to_ldm(pipeline.unet, pipeline.vae, pipeline.text_encoder, open_clip=open_clip)
    if open_clip:
        generator = torch.Generator().manual_seed(seed)
        layers = pipeline.text_encoder.config.num_hidden_layers
        last = f"{OPEN_CLIP_PREFIX}transformer.resblocks.{layers - 1}."
        skipped = f"{OPEN_CLIP_PREFIX}transformer.resblocks.{layers}."
        for key in [k for k in state if k.startswith(last)]:
            state[skipped + key[len(last):]] = torch.randn(state[key].shape, generator=generator) * 0.02
        width = pipeline.text_encoder.config.hidden_size
        state[OPEN_CLIP_PREFIX + "text_projection"] = torch.randn(width, width, generator=generator) * 0.02
        state[OPEN_CLIP_PREFIX + "logit_scale"] = torch.tensor(4.6052)
    return state


def save_single_file(pipeline: DiffusionPipeline, path: Path, dtype: torch.dtype = torch.float32,
                     extras: dict[str, torch.Tensor] | None = None, *, old_text_keys: bool = False,
                     include_vae: bool = True, metadata: dict[str, str] | None = None) -> Path:
    """Save in the original CompVis/A1111 (SGM for SDXL) key layout, as checkpoints are shared on Civitai.

    ``old_text_keys`` writes SD1 text-encoder names without ``text_model.`` (as early checkpoints did);
    ``include_vae=False`` leaves the VAE out (files "without a baked VAE"); ``extras`` are added as
    they are (``model_ema.*``, ``alphas_cumprod``, a ``v_pred`` marker, …).
    """
    state = {key: tensor.to(dtype) if tensor.is_floating_point() else tensor
             for key, tensor in original_layout_state(pipeline).items()}
    if old_text_keys:
        old_prefix = TEXT_ENCODER_PREFIX + "text_model."
        state = {(TEXT_ENCODER_PREFIX + key[len(old_prefix):] if key.startswith(old_prefix) else key): tensor
                 for key, tensor in state.items()}
    if not include_vae:
        state = {key: tensor for key, tensor in state.items() if not key.startswith(VAE_PREFIX)}
    state.update(extras or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt", **(metadata or {})})
    return path


def ema_extras(pipeline: DiffusionPipeline, seed: int = 0) -> dict[str, torch.Tensor]:
    """``model_ema.*`` tensors as training checkpoints carry them (flattened names, different values)."""
    generator = torch.Generator().manual_seed(seed)
    extras = {"model_ema.decay": torch.tensor(0.9999), "model_ema.num_updates": torch.tensor(1000, dtype=torch.int32)}
    for key, tensor in original_layout_state(pipeline).items():
        if key.startswith("model.diffusion_model."):
            flat = "model_ema." + "".join(key.split(".")[1:])
            extras[flat] = torch.randn(tensor.shape, generator=generator)
    return extras


def schedule_extras(beta_start: float = 0.00085, beta_end: float = 0.012, steps: int = 1000
                    ) -> dict[str, torch.Tensor]:
    """The noise-schedule buffers LDM checkpoints carry (``betas``, ``alphas_cumprod``, …), scaled-linear."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, steps, dtype=torch.float64) ** 2
    alphas_cumprod = torch.cumprod(1 - betas, dim=0)
    return {"betas": betas.float(), "alphas_cumprod": alphas_cumprod.float(),
            "alphas_cumprod_prev": torch.cat([torch.ones(1, dtype=torch.float64), alphas_cumprod[:-1]]).float(),
            "sqrt_alphas_cumprod": alphas_cumprod.sqrt().float()}


def save_config_folder(pipeline: DiffusionPipeline, folder: Path) -> Path:
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
    state = random_linear_head(widths, indices, generator)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def random_linear_head(widths: Sequence[int], indices: Sequence[int], generator: torch.Generator
                       ) -> dict[str, torch.Tensor]:
    """Uniform ±1/√fan_in weights and biases of an ``nn.Sequential`` MLP whose Linear layers sit at ``indices``
    and map ``widths[i]`` → ``widths[i + 1]``; drawn layer by layer, weight before bias."""
    state: dict[str, torch.Tensor] = {}
    for index, (fan_in, fan_out) in zip(indices, itertools.pairwise(widths), strict=True):
        bound = 1 / fan_in**0.5
        state[f"layers.{index}.weight"] = (torch.rand(fan_out, fan_in, generator=generator) * 2 - 1) * bound
        state[f"layers.{index}.bias"] = (torch.rand(fan_out, generator=generator) * 2 - 1) * bound
    return state
