"""Tiny Flux.1 and SD3.5 models saved in every distributed layout, built once per test session."""

from __future__ import annotations

from pathlib import Path

import torch

from ckptbench.demo.tiny import save_config_folder
from ckptbench.demo.tiny_families import (
    save_flow_checkpoint,
    save_flow_split,
    save_tiny_t5_tokenizer,
    tiny_flux_pipeline,
    tiny_sd35_pipeline,
)

SEEDS = {"flux": 1, "schnell": 3, "sd35": 2}


def build_flow_models(root: Path) -> dict[str, Path]:
    """Keys: ``tokenizer``; ``flux_config``/``schnell_config``/``sd35_config``; ``flux_full`` (ComfyUI checkpoint),
    ``flux_split`` (folder: transformer, clip_l, t5xxl, ae), ``flux_fp8`` (folder, fp8 transformer),
    ``schnell_full``; ``sd35_full``; ``sd35_split`` (folder: transformer with its VAE, clip_l, clip_g, t5xxl)."""
    tokenizer = save_tiny_t5_tokenizer(root / "t5-tokenizer")
    flux = tiny_flux_pipeline(tokenizer, seed=SEEDS["flux"])
    schnell = tiny_flux_pipeline(tokenizer, seed=SEEDS["schnell"], variant="schnell")
    sd35 = tiny_sd35_pipeline(tokenizer, seed=SEEDS["sd35"])
    models = {"tokenizer": tokenizer,
              "flux_config": save_config_folder(flux, root / "flux-config"),
              "schnell_config": save_config_folder(schnell, root / "schnell-config"),
              "sd35_config": save_config_folder(sd35, root / "sd35-config"),
              "flux_full": save_flow_checkpoint(flux, root / "flux-full.safetensors"),
              "schnell_full": save_flow_checkpoint(schnell, root / "schnell-full.safetensors", torch.bfloat16),
              "sd35_full": save_flow_checkpoint(sd35, root / "sd35-full.safetensors")}
    save_flow_split(flux, root / "flux-split")
    save_flow_split(flux, root / "flux-fp8", transformer_dtype=torch.float8_e4m3fn)
    save_flow_split(sd35, root / "sd35-split", with_vae=True)
    models.update(flux_split=root / "flux-split", flux_fp8=root / "flux-fp8", sd35_split=root / "sd35-split")
    return models


def flux_split_fields(models: dict[str, Path], folder: str = "flux_split") -> dict[str, object]:
    parts = models[folder]
    return {"path": parts / "transformer.safetensors", "config": models["flux_config"], "vae": parts / "ae.safetensors",
            "text_encoders": (parts / "clip_l.safetensors", parts / "t5xxl.safetensors"),
            "t5_tokenizer": models["tokenizer"]}


def sd35_split_fields(models: dict[str, Path]) -> dict[str, object]:
    parts = models["sd35_split"]
    return {"path": parts / "transformer.safetensors", "config": models["sd35_config"],
            "text_encoders": tuple(parts / f"{role}.safetensors" for role in ("clip_l", "clip_g", "t5xxl")),
            "t5_tokenizer": models["tokenizer"]}
