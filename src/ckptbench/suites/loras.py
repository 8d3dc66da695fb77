"""Which LoRAs a case asks for, and which files they are (GhostReview's LoRA suite rules).

* The case's list is its prompt's ``<lora:name:weight>`` tags, completed by the LoRAs the suite declares
  for the case that the prompt does not already apply (a LoRA in both is applied once, at the prompt's
  weight). A LoRA named without a weight gets ``[generation] default_lora_weight`` (0.8).
* A name is resolved, in order: by the suite's explicit mapping (``lora_files``: name → file name, path
  or hash), by file stem in ``[generation] lora_dirs``, by the alias A1111 shows (the kohya
  ``ss_output_name`` in the file's metadata), or — when the name is itself a hash — by hash.
* Hashes: ``autov2:`` + 10 hex (Civitai AutoV2, the first 10 hex digits of the file's sha256),
  ``autov3:`` + 12 hex (what A1111 and ckptbench write as "Lora hashes": the file's ``sshs_model_hash``
  metadata, else the sha256 of the tensor data after the safetensors header; 12 hex digits of the whole
  file's sha256 are accepted too, as some tools and earlier ckptbench versions wrote those), ``sha256:`` + 64
  hex; bare hex strings of those lengths are read the same way.

Loading the files is the generator's job (``generate/lora.py``); this module only decides what to load.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path

from ckptbench.generate.base import LoraUse
from ckptbench.generate.lora import (
    PICKLE_SUFFIXES,
    SAFE_SUFFIXES,
    LoraError,
    LoraLibrary,
    LoraNotFoundError,
    combine_loras,
    lora_short_hash,
)
from ckptbench.hashing import addnet_sha256, sha256_file
from ckptbench.prompt import LoraTag, extract_lora_tags
from ckptbench.suites.case import Case

HASH_LENGTHS = {"autov2": 10, "autov3": 12, "sha256": 64}
_HEX = re.compile(r"[0-9a-fA-F]+")


def resolve_case_loras(case: Case, library: LoraLibrary) -> tuple[LoraUse, ...]:
    """The files (with weights) one case applies; ``LoraError`` names the LoRA that cannot be found."""
    _, tags = extract_lora_tags(case.prompt)
    mapping = dict(case.lora_files)
    from_prompt = [resolve_lora(tag, mapping, library) for tag in tags]
    in_prompt = {use.sha256 for use in from_prompt}
    declared = [resolve_lora(tag, mapping, library) for tag in case.loras]
    return combine_loras([*from_prompt, *(use for use in declared if use.sha256 not in in_prompt)])


def resolve_lora(tag: LoraTag, mapping: Mapping[str, str], library: LoraLibrary) -> LoraUse:
    return library.use(tag, find_lora_file(tag.name, mapping.get(tag.name), library))


def find_lora_file(name: str, target: str | None, library: LoraLibrary) -> Path:
    """The file a LoRA name means: by ``target`` (the suite's mapping) when given, else by stem, alias or hash."""
    if target is not None:
        return _by_target(name, target, library)
    try:
        return library.find(name)
    except LoraNotFoundError as error:
        aliased = [path for path in _files(library) if _alias(path) == name]
        if len(aliased) == 1:
            return aliased[0]
        digest = parse_hash(name)
        if digest is not None:
            found = _by_hash(library, *digest)
            if found is not None:
                return found
        raise LoraError(f"LoRA '{name}' was not found in lora_dirs ({error.folders}) by file name, alias "
                        f"(ss_output_name) or hash{error.hint}; put {name}.safetensors there, fix the name, or map "
                        f"it to its file in the suite's `lora_files` (e.g. {name} = \"file.safetensors\").") from None


def parse_hash(text: str) -> tuple[str, str] | None:
    """('autov2' | 'autov3' | 'sha256', lowercase hex) for a hash reference, else None."""
    kind, _, value = text.strip().partition(":")
    if value and kind.lower() in HASH_LENGTHS:
        if len(value) == HASH_LENGTHS[kind.lower()] and _HEX.fullmatch(value):
            return kind.lower(), value.lower()
        raise LoraError(f"'{text}' is not a {kind} hash ({HASH_LENGTHS[kind.lower()]} hex digits); fix the mapping.")
    by_length = {length: kind for kind, length in HASH_LENGTHS.items()}
    if not value and _HEX.fullmatch(text.strip()) and len(text.strip()) in by_length:
        return by_length[len(text.strip())], text.strip().lower()
    return None


def _by_target(name: str, target: str, library: LoraLibrary) -> Path:
    digest = parse_hash(target)
    if digest is not None:
        found = _by_hash(library, *digest)
        if found is None:
            folders = ", ".join(str(folder) for folder in library.dirs) or "none set"
            raise LoraError(f"LoRA '{name}' is mapped to {target}, but no file in lora_dirs ({folders}) has that "
                            "hash; put the file there or fix the mapping.")
        return found
    candidate = Path(target).expanduser()
    if candidate.is_absolute():
        if not candidate.is_file():
            raise LoraError(f"LoRA '{name}' is mapped to {candidate}, which does not exist; fix the mapping.")
        return candidate
    stem = candidate.stem if candidate.suffix.lower() in SAFE_SUFFIXES + PICKLE_SUFFIXES else target
    return library.find(stem)


def _by_hash(library: LoraLibrary, kind: str, digest: str) -> Path | None:
    files = _files(library)
    if kind == "autov3":
        # What A1111 writes: the addnet hash, or the file's sshs_model_hash metadata where it has one.
        for path in files:
            if lora_short_hash(path, library.cache).lower() == digest:
                return path
        for path in files:
            if path.suffix.lower() in SAFE_SUFFIXES and addnet_sha256(path, library.cache).startswith(digest):
                return path
        # Some tools (and earlier ckptbench versions) wrote the first 12 hex digits of the whole file's sha256.
    for path in files:
        if sha256_file(path, library.cache).startswith(digest):
            return path
    return None


def _files(library: LoraLibrary) -> list[Path]:
    suffixes = SAFE_SUFFIXES + (PICKLE_SUFFIXES if library.allow_pickle else ())
    return [path for folder in library.dirs for path in sorted(folder.rglob("*"))
            if path.is_file() and path.suffix.lower() in suffixes]


def _alias(path: Path) -> str | None:
    """The kohya ``ss_output_name`` of a safetensors LoRA (what A1111 offers as its alias)."""
    if path.suffix.lower() not in SAFE_SUFFIXES:
        return None
    try:
        with path.open("rb") as handle:
            length = int.from_bytes(handle.read(8), "little")
            if length <= 0 or length > 100_000_000:
                return None
            header = json.loads(handle.read(length))
    except (OSError, ValueError):
        return None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    alias = metadata.get("ss_output_name") if isinstance(metadata, dict) else None
    return alias if isinstance(alias, str) and alias else None
