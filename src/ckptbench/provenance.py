"""What produced a result: package versions, device, dtype, platform."""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from typing import Any

import torch

from ckptbench import __version__

_PACKAGES = ("torch", "torchvision", "diffusers", "transformers", "safetensors", "open_clip_torch", "numpy",
             "pandas", "scipy")


def collect_provenance(device: torch.device, generation_dtype: str) -> dict[str, Any]:
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    # A Ray driver may plan for GPUs it does not have itself: the workers record their devices.
    on_gpu = device.type == "cuda" and torch.cuda.is_available()
    device_name = torch.cuda.get_device_name(device) if on_gpu else platform.processor() or device.type
    return {
        "ckptbench": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "device": str(device),
        "device_name": device_name,
        "generation_dtype": generation_dtype,
    }
