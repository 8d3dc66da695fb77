"""Loading a resolved checkpoint into a diffusers pipeline, offline for local files."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from ckptbench.errors import ModelFileError
from ckptbench.models.checkpoint import ResolvedCheckpoint
from ckptbench.models.tokenizer import clip_tokenizer

BUNDLED_CONFIGS = Path(__file__).resolve().parent.parent / "models" / "configs"


def load_pipeline(checkpoint: ResolvedCheckpoint, device: torch.device, dtype: torch.dtype
                  ) -> StableDiffusionPipeline:
    """Load once per run; never reaches for the hub when the checkpoint is a local file or folder."""
    try:
        if checkpoint.kind == "single-file":
            config = checkpoint.config or BUNDLED_CONFIGS / "sd15"
            pipeline = StableDiffusionPipeline.from_single_file(
                str(checkpoint.path), config=str(config), local_files_only=True, torch_dtype=dtype,
                tokenizer=clip_tokenizer(), safety_checker=None, feature_extractor=None,
                requires_safety_checker=False,
            )
        else:
            pipeline = StableDiffusionPipeline.from_pretrained(
                str(checkpoint.path), local_files_only=True, torch_dtype=dtype, safety_checker=None,
                feature_extractor=None, requires_safety_checker=False,
            )
    except Exception as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ModelFileError(
            f"checkpoint '{checkpoint.name}': could not load {checkpoint.path} as a Stable Diffusion 1.x "
            f"pipeline ({first_line[:300]}); check that the file is a complete SD1.x checkpoint, or set "
            "`config` to the diffusers config folder of its architecture."
        ) from None
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)
