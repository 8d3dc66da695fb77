"""Resolving a checkpoint entry of the spec to local files and a content digest."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ckptbench.errors import ModelFileError, WeightsUnavailableError
from ckptbench.hashing import DigestCache, autov2, relative_files, sha256_file, tree_sha256
from ckptbench.spec import CheckpointSpec

CheckpointKind = Literal["single-file", "diffusers-folder"]
_FOLDER_FILES = (".safetensors", ".bin", ".json", ".txt", ".model")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


@dataclass(frozen=True)
class ResolvedCheckpoint:
    name: str
    source: str  # what the spec said: a path or hub:org/name
    kind: CheckpointKind
    path: Path
    sha256: str
    config: Path | None = None

    @property
    def autov2(self) -> str:
        return autov2(self.sha256)


def resolve_checkpoint(spec: CheckpointSpec, cache: DigestCache | None = None) -> ResolvedCheckpoint:
    """Find the checkpoint's files (hub ids from the local Hugging Face cache) and hash them."""
    path = _hub_snapshot(spec.hub) if spec.hub else spec.path
    assert path is not None
    if path.is_dir():
        if not (path / "model_index.json").is_file():
            raise ModelFileError(
                f"checkpoint '{spec.name}': folder {path} has no model_index.json, so it is not a diffusers "
                "pipeline folder; point `path` at the pipeline folder or at a single .safetensors file."
            )
        files = relative_files(path, _FOLDER_FILES)
        digest = tree_sha256((str(f.relative_to(path)), sha256_file(f, cache)) for f in files)
        return ResolvedCheckpoint(spec.name, spec.source, "diffusers-folder", path, digest, spec.config)
    if not path.is_file():
        raise ModelFileError(f"checkpoint '{spec.name}': {path} does not exist; fix `path` in the spec.")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise ModelFileError(
            f"checkpoint '{spec.name}': {path.name} is a pickle file, which can run code when loaded; "
            "ckptbench only loads .safetensors. Convert it where you trust it, or use a .safetensors release."
        )
    if path.suffix.lower() != ".safetensors":
        raise ModelFileError(
            f"checkpoint '{spec.name}': {path.name} is neither a .safetensors file nor a diffusers folder; "
            "give a .safetensors checkpoint or a diffusers pipeline folder."
        )
    return ResolvedCheckpoint(spec.name, spec.source, "single-file", path, sha256_file(path, cache), spec.config)


def _hub_snapshot(repo_id: str | None) -> Path:
    from huggingface_hub import snapshot_download

    assert repo_id is not None
    try:
        return Path(snapshot_download(repo_id, local_files_only=True))
    except Exception:
        pass
    try:
        return Path(snapshot_download(repo_id))
    except Exception as error:
        raise WeightsUnavailableError(
            f"hub checkpoint '{repo_id}' is not in the local Hugging Face cache and could not be downloaded "
            f"({type(error).__name__}); run `hf download {repo_id}` where the hub is reachable, or give the "
            "local folder as `path`."
        ) from None
