"""Reading model files safely: names, shapes and metadata first (cheap), tensors when needed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import torch
from safetensors import safe_open

from ckptbench.errors import ModelFileError
from ckptbench.models.safety import (
    PICKLE_SUFFIXES,
    TensorEntry,
    check_pickle_allowed,
    load_pickle_tensors,
    read_safetensors_header,
)

_TORCH_DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64",
                      torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8",
                      torch.bool: "BOOL"}


@dataclass(frozen=True)
class TensorInfo:
    dtype: str  # safetensors dtype name: F32, F16, BF16, ...
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelFile:
    """What a single model file holds, without its tensor data (for pickles the data was read once)."""

    path: Path
    format: Literal["safetensors", "pickle"]
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str]

    def has_prefix(self, prefix: str) -> bool:
        return any(name.startswith(prefix) for name in self.tensors)


def is_pickle_path(path: Path) -> bool:
    return path.suffix.lower() in PICKLE_SUFFIXES


def open_model_file(path: Path, allow_pickle: bool = False, how_to_allow: str = "pass --allow-pickle"
                    ) -> ModelFile:
    """Validate and index ``path``: a safetensors header is checked, a pickle only read if allowed."""
    path = Path(path)
    if is_pickle_path(path):
        check_pickle_allowed(path, allow_pickle, how_to_allow)
        tensors, scalars = load_pickle_tensors(path)
        index = {name: TensorInfo(_TORCH_DTYPE_NAMES.get(t.dtype, str(t.dtype)), tuple(t.shape))
                 for name, t in tensors.items()}
        return ModelFile(path, "pickle", index, scalars)
    if path.suffix.lower() != ".safetensors":
        raise ModelFileError(f"{path}: unknown model file type '{path.suffix}'; ckptbench reads .safetensors files "
                             "(and, when allowed, .ckpt/.pt/.pth/.bin pickles).")
    header = read_safetensors_header(path)
    index = {name: TensorInfo(entry.dtype, entry.shape) for name, entry in header.tensors.items()}
    return ModelFile(path, "safetensors", index, header.metadata)


def load_tensors(path: Path, allow_pickle: bool = False, keep: Callable[[str], bool] | None = None,
                 how_to_allow: str = "pass --allow-pickle") -> dict[str, torch.Tensor]:
    """The file's tensors (those ``keep`` accepts), on the CPU, after the same checks as ``open_model_file``."""
    path = Path(path)
    keep = keep or (lambda _name: True)
    if is_pickle_path(path):
        check_pickle_allowed(path, allow_pickle, how_to_allow)
        tensors, _ = load_pickle_tensors(path)
        return {name: tensor for name, tensor in tensors.items() if keep(name)}
    header = read_safetensors_header(path)
    loaded: dict[str, torch.Tensor] = {}
    try:
        with path.open("rb") as stream:
            for name, entry in header.tensors.items():
                if not keep(name):
                    continue
                if entry.dtype in _SAFETENSORS_DTYPES:
                    loaded[name] = _read_tensor(stream, 8 + header.header_bytes, entry)
                else:  # dtypes torch has no plain tensor for (U16, C64, …): safetensors decodes them
                    with safe_open(str(path), framework="pt", device="cpu") as handle:
                        loaded[name] = handle.get_tensor(name)
    except Exception as error:  # the header was valid, so this is an I/O fault or a tool bug
        raise ModelFileError(f"{path}: reading the tensors failed ({type(error).__name__}: {error}); check the "
                             "disk and download the file again.") from None
    return loaded


_SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                       "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "I64": torch.int64,
                       "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                       "BOOL": torch.bool}


def _read_tensor(stream: BinaryIO, data_start: int, entry: TensorEntry) -> torch.Tensor:
    """One tensor read straight into memory torch allocated (aligned, owned), with no memory map: a file's
    weights are then resident once, not as mapped file pages and again as the model's copy."""
    tensor = torch.empty(entry.shape, dtype=_SAFETENSORS_DTYPES[entry.dtype])
    if entry.end > entry.start:
        stream.seek(data_start + entry.start)
        view = tensor.reshape(-1).view(torch.uint8).numpy()
        if stream.readinto(view) != entry.end - entry.start:
            raise OSError("the file ended before the tensor's bytes")
    return tensor
