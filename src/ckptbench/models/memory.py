"""How much memory a checkpoint needs to generate, estimated from its files' headers before anything loads.

Weights: every tensor the pipeline keeps (EMA copies and replaced parts left out), at the run dtype's
width, except the fp8-stored linear weights of a Flux/SD3.5 transformer, which stay one byte each (they
are upcast layer by layer). Activations: the family's peak for one 512×512 half-precision image
(``ModelFamily.bytes_per_image_512``), scaled by the batch's pixels and the dtype's width. Loading moves
each tensor from the file into its module, so the weights are held once; the estimate is what the device
must hold while generating, and ``ckptbench run --dry-run`` compares it with what the device has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ckptbench.models.checkpoint import ResolvedCheckpoint
from ckptbench.models.families import get_family
from ckptbench.models.safety import read_safetensors_header

DTYPE_WIDTH = {"fp32": 4, "fp16": 2, "bf16": 2}
FP8 = ("F8_E4M3", "F8_E5M2")
INT_DTYPES = ("I64", "I32", "I16", "I8", "U8", "BOOL")
OVERHEAD = 1.1  # the framework's own buffers, fragmentation


@dataclass(frozen=True)
class MemoryEstimate:
    checkpoint: str
    family: str
    weights_bytes: float
    activation_bytes: float
    available_bytes: float | None  # what the device has; None when unknown

    @property
    def total_bytes(self) -> float:
        return (self.weights_bytes + self.activation_bytes) * OVERHEAD

    @property
    def fits(self) -> bool | None:
        return None if self.available_bytes is None else self.total_bytes <= self.available_bytes


def _weight_files(checkpoint: ResolvedCheckpoint) -> list[tuple[Path, tuple[str, ...]]]:
    """(safetensors file, key prefixes left out) of everything the pipeline loads."""
    if checkpoint.kind == "diffusers-folder":
        return [(f, ()) for f in sorted(checkpoint.path.rglob("*.safetensors"))]
    skipped: tuple[str, ...] = ("model_ema.",)
    if checkpoint.vae is not None:
        skipped += ("first_stage_model.", "vae.")
    from ckptbench.models.families.flow import TEXT_PREFIXES

    skipped += tuple(TEXT_PREFIXES[part.role] for part in checkpoint.text_encoders)
    files = [(checkpoint.path, skipped)] + [(part.path, ()) for part in checkpoint.text_encoders]
    if checkpoint.vae is not None:
        vae = checkpoint.vae.path
        files += [(f, ()) for f in sorted(vae.rglob("*.safetensors"))] if vae.is_dir() else [(vae, ())]
    return files


def weights_bytes(checkpoint: ResolvedCheckpoint, dtype: str) -> float:
    width = DTYPE_WIDTH.get(dtype, 2)
    total = 0.0
    for path, skipped in _weight_files(checkpoint):
        if path.suffix != ".safetensors":
            continue  # allowed pickles: counted as not known rather than read here
        for name, entry in read_safetensors_header(path).tensors.items():
            if name.startswith(skipped) or entry.dtype in INT_DTYPES:
                continue
            total += entry.numel * (1 if entry.dtype in FP8 and len(entry.shape) == 2 else width)
    return total


def activation_bytes(family: str, width: int, height: int, batch: int, dtype: str) -> float:
    return get_family(family).bytes_per_image_512 * (width * height) / 512**2 * DTYPE_WIDTH.get(dtype, 2) / 2 * batch


def available_bytes(device: str) -> float | None:
    """Total memory of a CUDA device, or the memory this machine has available for a CPU run."""
    if device.startswith("cuda"):
        import torch

        return float(torch.cuda.get_device_properties(torch.device(device)).total_memory)
    if device == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as meminfo:
                fields = dict(line.split(":", 1) for line in meminfo)
            return float(fields["MemAvailable"].strip().split()[0]) * 1024
        except (OSError, KeyError, ValueError):
            pages = os.sysconf("SC_AVPHYS_PAGES") if hasattr(os, "sysconf") else None
            return float(pages * os.sysconf("SC_PAGE_SIZE")) if pages else None
    return None


def estimate_memory(checkpoint: ResolvedCheckpoint, dtype: str, width: int, height: int, batch: int,
                    device: str) -> MemoryEstimate:
    return MemoryEstimate(checkpoint.name, checkpoint.family, weights_bytes(checkpoint, dtype),
                          activation_bytes(checkpoint.family, width, height, batch, dtype), available_bytes(device))


def _size(count: float) -> str:
    return f"{count / 1024**3:.1f} GiB" if count >= 1024**3 else f"{count / 1024**2:.0f} MiB"


def describe(estimate: MemoryEstimate, device: str) -> str:
    text = (f"{estimate.checkpoint} ({estimate.family}) needs ≈ {_size(estimate.total_bytes)} (weights "
            f"{_size(estimate.weights_bytes)}, activations {_size(estimate.activation_bytes)})")
    if estimate.available_bytes is None:
        return text + f"; the memory of {device} is not known"
    verdict = "fits" if estimate.fits else ("will NOT fit: use a smaller dtype (fp8-stored files stay fp8), a "
                                            "smaller batch or size, or a device with more memory")
    return text + f"; {device} has {_size(estimate.available_bytes)}: {verdict}"
