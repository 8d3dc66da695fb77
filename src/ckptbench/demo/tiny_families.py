"""Tiny random-weight models of the newer families, saved in the layouts Civitai and ComfyUI distribute.

* SDXL v-prediction with zero terminal SNR (NoobAI-XL v-pred style): the SGM single file with the empty
  ``v_pred`` and ``ztsnr`` marker tensors and modelspec metadata that such releases carry.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ckptbench.demo.tiny import save_single_file, tiny_sdxl_pipeline


def vpred_ztsnr_markers() -> dict[str, torch.Tensor]:
    """The empty marker tensors NoobAI-XL v-pred files carry (read by reForge, Forge and A1111)."""
    return {"v_pred": torch.tensor([]), "ztsnr": torch.tensor([])}


def save_sdxl_vpred_ztsnr(path: Path, seed: int = 6, dtype: torch.dtype = torch.float32) -> Path:
    """A tiny SDXL single file marked v-prediction + zero terminal SNR, with modelspec metadata."""
    metadata = {"modelspec.architecture": "stable-diffusion-xl-v1-base", "modelspec.prediction_type": "v",
                "modelspec.title": path.stem}
    return save_single_file(tiny_sdxl_pipeline(seed=seed), path, dtype=dtype, extras=vpred_ztsnr_markers(),
                            metadata=metadata)
