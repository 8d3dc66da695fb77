"""``ckptbench convert``: a pickle checkpoint → .safetensors, under the same rule as everywhere else."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from ckptbench.errors import ModelFileError
from ckptbench.hashing import sha256_file
from ckptbench.models.safety import PICKLE_SUFFIXES, check_pickle_allowed, load_pickle_tensors, read_safetensors_header


def convert_to_safetensors(source: Path, target: Path, allow_pickle: bool) -> dict[str, object]:
    """Write ``source``'s tensors to ``target`` atomically; refuse unless ``allow_pickle`` (then weights_only)."""
    source, target = Path(source), Path(target)
    if not source.is_file():
        raise ModelFileError(f"{source} does not exist; give the pickle file to convert.")
    if source.suffix.lower() not in PICKLE_SUFFIXES:
        read_safetensors_header(source)  # a pickle in disguise is refused as such, not called "already safe"
        raise ModelFileError(f"{source}: only pickle files ({', '.join(PICKLE_SUFFIXES)}) are converted; a "
                             ".safetensors file is already in the safe format.")
    if target.suffix.lower() != ".safetensors":
        raise ModelFileError(f"{target}: the output must be a .safetensors file; give OUT.safetensors.")
    if target.exists():
        raise ModelFileError(f"{target} already exists; remove it or choose another output name.")
    check_pickle_allowed(source, allow_pickle, "pass --allow-pickle")
    tensors, scalars = load_pickle_tensors(source)
    if not tensors:
        raise ModelFileError(f"{source}: holds no tensors; nothing to convert.")
    metadata = {"format": "pt", "ckptbench.converted_from": source.name,
                "ckptbench.source_sha256": sha256_file(source)}
    metadata.update({f"ckptbench.pickle.{key}": value for key, value in scalars.items()})
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    try:
        save_file(_unshared(tensors), temporary, metadata=metadata)
        with open(temporary, "rb") as stream:
            os.fsync(stream.fileno())
        read_safetensors_header(Path(temporary))  # what we wrote must pass our own checks
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return {"tensors": len(tensors), "sha256": sha256_file(target), "bytes": target.stat().st_size}


def _unshared(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """safetensors refuses tensors that share memory (tied weights); copy all but the first of each."""
    seen: set[int] = set()
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        pointer = tensor.untyped_storage().data_ptr()
        out[name] = tensor.contiguous() if pointer not in seen or tensor.numel() == 0 else tensor.clone().contiguous()
        seen.add(pointer)
    return out
