"""Tiny model files of the other kinds users download: a VAE, a kohya LoRA and textual-inversion embeddings.

Saved in their real layouts (original-layout VAE without prefix, kohya ``lora_unet_*``/``lora_te_*`` names
with ``lora_down``/``lora_up``/``alpha`` and ``ss_*`` metadata, A1111 ``emb_params`` and SDXL
``clip_l``/``clip_g`` embeddings) so that ``ckptbench inspect`` and the loaders see what real files hold.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

from ckptbench.models.ldm_layout import vae_to_ldm


def save_vae_file(vae: AutoencoderKL, path: Path, dtype: torch.dtype = torch.float32) -> Path:
    """A VAE as single-file VAEs are shared (e.g. ``vae-ft-mse-840000``): original names, no prefix."""
    state = {key: tensor.detach().to(dtype).contiguous().clone() for key, tensor in
             vae_to_ldm(vae.state_dict(), vae.config).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt"})
    return path


def save_kohya_lora(unet: torch.nn.Module, text_encoder: torch.nn.Module, path: Path, rank: int = 4,
                    alpha: float = 4.0, seed: int = 0, base_model_version: str = "sd_v1") -> Path:
    """A kohya-style LoRA over the attention projections, with the training metadata kohya writes."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    targets = [("lora_unet_", name, module) for name, module in unet.named_modules()
               if isinstance(module, torch.nn.Linear) and ".attn" in name]
    targets += [("lora_te_", "text_model." + name.removeprefix("text_model."), module)
                for name, module in text_encoder.named_modules()
                if isinstance(module, torch.nn.Linear) and "self_attn" in name]
    for prefix, name, module in targets:
        base = prefix + name.replace(".", "_")
        state[f"{base}.lora_down.weight"] = torch.randn(rank, module.in_features, generator=generator) * 0.1
        state[f"{base}.lora_up.weight"] = torch.randn(module.out_features, rank, generator=generator) * 0.1
        state[f"{base}.alpha"] = torch.tensor(alpha)
    metadata = {
        "ss_network_module": "networks.lora", "ss_network_dim": str(rank), "ss_network_alpha": str(alpha),
        "ss_base_model_version": base_model_version, "ss_output_name": path.stem,
        "ss_tag_frequency": json.dumps({"10_tiny": {"tiny": 10, "random": 3}}),
        "modelspec.architecture": "stable-diffusion-v1/lora", "modelspec.title": path.stem,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata=metadata)
    return path


def save_embedding(path: Path, vectors: int = 2, width: int = 768, sdxl: bool = False, seed: int = 0) -> Path:
    """A textual-inversion embedding: A1111's ``emb_params``, or SDXL's ``clip_l`` + ``clip_g`` pair."""
    generator = torch.Generator().manual_seed(seed)
    if sdxl:
        state = {"clip_l": torch.randn(vectors, 768, generator=generator),
                 "clip_g": torch.randn(vectors, 1280, generator=generator)}
    else:
        state = {"emb_params": torch.randn(vectors, width, generator=generator)}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path), metadata={"format": "pt"})
    return path
