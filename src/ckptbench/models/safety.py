"""Model files from strangers: validate safetensors headers before loading, never unpickle code.

A safetensors file is an 8-byte little-endian header length, a JSON header naming every tensor's
dtype, shape and byte range, then the raw bytes. The header is checked here in full before any
library touches the file, so a truncated download or a lying header gives one clear sentence
naming the file and the fault instead of a crash deep inside a loader.

Pickle files (``.ckpt``, ``.pt``, ``.pth``, ``.bin``) can run arbitrary code when unpickled. They are
refused unless the user opts in per file, and even then only ever read with
``torch.load(weights_only=True)``, whose restricted unpickler rejects every global that is not a
tensor building block; the result must be a plain mapping of names to tensors.
"""

from __future__ import annotations

import json
import math
import pickle
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from ckptbench.errors import ModelFileError

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
MAX_HEADER_BYTES = 100 * 1024 * 1024  # the safetensors reference implementation's own bound

# Bytes per element of every dtype the safetensors format defines that torch can hold.
DTYPE_BYTES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8, "C64": 8,
}

FileFormat = Literal["safetensors", "zip-pickle", "pickle", "unknown"]


class UnsafeModelFileError(ModelFileError):
    """A model file was refused because loading it could execute code."""


@dataclass(frozen=True)
class TensorEntry:
    dtype: str
    shape: tuple[int, ...]
    start: int  # byte offsets relative to the end of the header
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    header_bytes: int
    tensors: dict[str, TensorEntry]
    metadata: dict[str, str] = field(default_factory=dict)


def sniff_format(path: Path) -> FileFormat:
    """What the first bytes say the file is, whatever its name."""
    with Path(path).open("rb") as stream:
        head = stream.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "zip-pickle"  # torch.save's default format: a zip archive holding a pickle
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"  # PROTO opcode: a raw pickle (torch's legacy format starts like this too)
    if len(head) >= 9:
        (length,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and length >= 2:
            return "safetensors"
    return "unknown"


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Parse and check a safetensors header; raise ``ModelFileError`` naming the file and the fault."""
    path = Path(path)
    size = path.stat().st_size
    kind = sniff_format(path) if size >= 2 else "unknown"
    if kind in ("zip-pickle", "pickle"):
        what = "a PyTorch zip archive holding a pickle" if kind == "zip-pickle" else "a Python pickle"
        raise UnsafeModelFileError(
            f"{path}: named .safetensors but it is {what}, which can run code when loaded; ckptbench refuses "
            "disguised pickles. Get the real .safetensors release, or rename it to .ckpt and opt in with "
            "allow_pickle = true if you trust its source."
        )
    if size < 8:
        raise ModelFileError(f"{path}: {size} bytes is too short for a safetensors file (truncated download?); "
                             "download it again.")
    with path.open("rb") as stream:
        (length,) = struct.unpack("<Q", stream.read(8))
        if length > MAX_HEADER_BYTES:
            raise ModelFileError(
                f"{path}: the safetensors header claims to be {length:,} bytes, over the {MAX_HEADER_BYTES:,}-byte "
                "limit; the file is corrupt or hostile, download it again from a trusted source.")
        if 8 + length > size:
            raise ModelFileError(
                f"{path}: the safetensors header claims {length:,} bytes but the file has only {size - 8:,} after "
                "the length field (truncated download?); download it again.")
        raw = stream.read(length)
    tensors, metadata = _parse_header(path, raw)
    _check_layout(path, tensors, size - 8 - length)
    return SafetensorsHeader(path, length, tensors, metadata)


def _parse_header(path: Path, raw: bytes) -> tuple[dict[str, TensorEntry], dict[str, str]]:
    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen: dict[str, Any] = {}
        for key, value in pairs:
            if key in seen:
                raise ModelFileError(f"{path}: the safetensors header names tensor '{key}' twice; the file is "
                                     "corrupt, download it again.")
            seen[key] = value
        return seen

    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelFileError(f"{path}: the safetensors header is not valid JSON ({error}); the file is corrupt, "
                             "download it again.") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: the safetensors header is not a JSON object; the file is corrupt.")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ModelFileError(f"{path}: the safetensors __metadata__ must map names to strings; the file is corrupt.")
    tensors = {name: _entry(path, name, value) for name, value in header.items()}
    return tensors, metadata


def _entry(path: Path, name: str, value: Any) -> TensorEntry:
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise ModelFileError(f"{path}: tensor '{name}' in the safetensors header lacks dtype/shape/data_offsets; "
                             "the file is corrupt.")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if dtype not in DTYPE_BYTES:
        raise ModelFileError(f"{path}: tensor '{name}' has unknown dtype {dtype!r}; the file is corrupt or from "
                             "an unsupported tool.")
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ModelFileError(f"{path}: tensor '{name}' has an invalid shape {shape!r}; the file is corrupt.")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise ModelFileError(f"{path}: tensor '{name}' has invalid data_offsets {offsets!r}; the file is corrupt.")
    entry = TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])
    expected = entry.numel * DTYPE_BYTES[dtype]
    if entry.end - entry.start != expected:
        raise ModelFileError(
            f"{path}: the header lies about tensor '{name}': {dtype} × {list(shape)} needs {expected:,} bytes but "
            f"its data_offsets span {entry.end - entry.start:,}; the file is corrupt, download it again.")
    return entry


def _check_layout(path: Path, tensors: Mapping[str, TensorEntry], data_bytes: int) -> None:
    previous_end, previous_name = 0, None
    for name, entry in sorted(tensors.items(), key=lambda item: (item[1].start, item[1].end)):
        if entry.start < previous_end:
            raise ModelFileError(f"{path}: tensors '{previous_name}' and '{name}' overlap in the file; the header "
                                 "is corrupt or hostile, download the file again.")
        if entry.start > previous_end:
            raise ModelFileError(f"{path}: {entry.start - previous_end:,} unclaimed bytes before tensor '{name}'; "
                                 "the header is corrupt, download the file again.")
        previous_end, previous_name = entry.end, name
    if previous_end > data_bytes:
        raise ModelFileError(
            f"{path}: the file is truncated: its header needs {previous_end:,} bytes of tensor data but only "
            f"{data_bytes:,} are there; download it again.")
    if previous_end < data_bytes:
        raise ModelFileError(f"{path}: {data_bytes - previous_end:,} bytes after the last tensor belong to no "
                             "tensor; the file is corrupt, download it again.")


def check_pickle_allowed(path: Path, allow_pickle: bool, how_to_allow: str) -> None:
    """Refuse a pickle file unless the user opted in for it (``how_to_allow`` says how)."""
    if not allow_pickle:
        raise UnsafeModelFileError(
            f"{path}: {path.suffix} files are Python pickles, which can run arbitrary code when loaded; ckptbench "
            f"refuses them. Use a .safetensors release, or if you trust the source {how_to_allow} (it is then "
            "read with torch.load(weights_only=True), which loads tensors only).")


def load_pickle_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors of an opted-in pickle file, read with the restricted unpickler; also its plain scalar fields.

    Nested dicts are flattened with dots (``state_dict.`` is unwrapped first, as real ``.ckpt`` files
    nest their weights under it); anything but tensors, numbers, strings and dicts is refused.
    """
    loaded = restricted_torch_load(path, str(path))
    extras: dict[str, Any] = {}
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        extras = {k: v for k, v in loaded.items() if k != "state_dict"}
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise UnsafeModelFileError(f"{path}: refused: it holds a {type(loaded).__name__}, not a mapping of names "
                                   "to tensors.")
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, str] = {}
    _flatten(path, loaded, "", tensors, scalars)
    # Training bookkeeping beside the weights (epoch, global_step, optimizer state): scalars become metadata.
    scalars.update({k: str(v) for k, v in extras.items() if v is None or isinstance(v, bool | int | float | str)})
    return tensors, scalars


def restricted_torch_load(path: Path, label: str) -> Any:
    """``torch.load(weights_only=True)`` of an opted-in pickle (checkpoint, LoRA, embedding, upscaler), with one
    message for every file kind when the restricted unpickler refuses it; ``label`` names the file in messages."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=sniff_format(path) == "zip-pickle")
    except pickle.UnpicklingError as error:
        raise UnsafeModelFileError(
            f"{label}: refused: the restricted unpickler (torch.load with weights_only=True) stopped at "
            f"'{_unpickler_reason(error)}'; the file asks to run code or build objects that are not tensors. "
            "Do not load it anywhere else either; get a .safetensors release.") from None
    except Exception as error:
        raise ModelFileError(f"{label}: could not be read as a PyTorch file ({type(error).__name__}: "
                             f"{str(error).splitlines()[0][:200]}); it is corrupt or not a model file.") from None


def _unpickler_reason(error: Exception) -> str:
    """The line of torch's message that names what was refused (not its advice to switch the check off)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if "GLOBAL" in line or line.startswith("Unsupported"):
            return line[:200]
    return lines[-1][:200] if lines else type(error).__name__


def _flatten(path: Path, value: Mapping[Any, Any], prefix: str, tensors: dict[str, torch.Tensor],
             scalars: dict[str, str]) -> None:
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, torch.Tensor):
            tensors[name] = item
        elif isinstance(item, dict):
            _flatten(path, item, name + ".", tensors, scalars)
        elif item is None or isinstance(item, bool | int | float | str):
            scalars[name] = str(item)
        else:
            raise UnsafeModelFileError(f"{path}: refused: entry '{name}' is a {type(item).__name__}, not a tensor; "
                                       "ckptbench only reads plain tensor mappings from pickles.")
