"""Choosing the torch device and dtype from the spec's 'auto' / explicit values."""

from __future__ import annotations

import torch

from ckptbench.errors import SpecError

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise SpecError(
            f"device '{name}' is not a torch device; use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SpecError(f"device '{name}' was asked for but no CUDA GPU is visible; use device = 'auto' or 'cpu'.")
    return device


def resolve_dtype_name(name: str, device: torch.device) -> str:
    """'auto' means fp32 on a CPU (half precision is slow or unsupported there) and fp16 on a GPU."""
    if name == "auto":
        return "fp32" if device.type == "cpu" else "fp16"
    return name


def torch_dtype(name: str) -> torch.dtype:
    return _DTYPES[name]
