"""Textual-inversion embeddings found by name in ``embedding_dirs``, as A1111 finds them.

An embedding's name is its file stem. A1111 recognises it wherever the name's CLIP tokens appear in a
prompt (the tokenizer lower-cases, so ``easynegative`` also names ``EasyNegative.safetensors``) and puts
the embedding's vectors in place of those tokens. Words that name no embedding are just words, as in
A1111. Formats: A1111 ``.safetensors`` (``emb_params``) and ``.pt`` (``string_to_param``), SDXL files
(``clip_l`` + ``clip_g``) and diffusers files (one ``{token: vector}`` entry). Pickle files (``.pt``,
``.bin``) are read only with ``allow_pickle_embeddings = true`` and then only by
``torch.load(weights_only=True)``, which refuses anything but plain tensors.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from ckptbench.errors import ModelFileError, SpecError
from ckptbench.generate.chunks import CHUNK_TOKENS, embedding_lookup, embeddings_in_tokens, tokenize_segments
from ckptbench.hashing import DigestCache, sha256_file
from ckptbench.models.safety import restricted_torch_load
from ckptbench.models.tokenizer import clip_tokenizer
from ckptbench.prompt import PromptSyntaxError, WeightedText, scheduled_prompts, strip_prompt_syntax

SAFE_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".bin")
SDXL_PARTS = ("clip_l", "clip_g")
SINGLE = ""  # key of the one tensor of an SD1/SD2 embedding


@dataclass(frozen=True)
class TextualInversion:
    """Vectors by text encoder: ``{"": (n, d)}`` for SD1/SD2, ``{"clip_l": …, "clip_g": …}`` for SDXL."""

    name: str
    path: Path
    vectors: dict[str, torch.Tensor]

    @property
    def vector_count(self) -> int:
        return next(iter(self.vectors.values())).shape[0]


def load_textual_inversion(path: Path, allow_pickle: bool = False) -> TextualInversion:
    """Read an embedding file in any of the formats A1111 accepts; raise ModelFileError otherwise."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelFileError(
                f"embedding {path}: {path.suffix} files are pickles, which can run code when loaded; use a "
                ".safetensors embedding, or set `allow_pickle_embeddings = true` under [generation] to read "
                "it with torch.load(weights_only=True).")
        data = restricted_torch_load(path, f"embedding {path}")
    else:
        try:
            data = load_file(path)
        except (SafetensorError, OSError) as error:
            raise ModelFileError(f"embedding {path}: not a readable .safetensors file ({error}).") from None
    vectors = _vectors(data, path)
    counts = {tensor.shape[0] for tensor in vectors.values()}
    if len(counts) != 1 or not 1 <= counts.pop() <= CHUNK_TOKENS:
        raise ModelFileError(f"embedding {path}: needs 1 to {CHUNK_TOKENS} vectors, the same number for each "
                             "text encoder; this file has " + ", ".join(
                                 f"{key or 'vectors'} {tuple(t.shape)}" for key, t in vectors.items()) + ".")
    return TextualInversion(path.stem, path, vectors)


def _vectors(data: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(data, dict) and all(part in data for part in SDXL_PARTS):
        return {part: _matrix(data[part], path) for part in SDXL_PARTS}
    if isinstance(data, dict) and isinstance(data.get("string_to_param"), dict):
        data = data["string_to_param"]  # A1111 .pt: {"string_to_param": {"*": tensor}, "name": …, …}
    if isinstance(data, dict):
        tensors = [value for value in data.values() if isinstance(value, torch.Tensor)]
        if len(tensors) == 1:  # A1111 safetensors {"emb_params": …} or diffusers {"<token>": …}
            return {SINGLE: _matrix(tensors[0], path)}
    raise ModelFileError(f"embedding {path}: not a textual-inversion embedding (expected one tensor, "
                         "'emb_params', 'string_to_param', or SDXL 'clip_l' + 'clip_g').")


def _matrix(tensor: object, path: Path) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor) or tensor.ndim not in (1, 2) or not tensor.is_floating_point():
        raise ModelFileError(f"embedding {path}: expected a float tensor of shape (vectors, width).")
    return tensor.detach().to(torch.float32).reshape(-1, tensor.shape[-1])


@dataclass
class EmbeddingLibrary:
    """The embedding files of ``embedding_dirs``, by name; files are hashed and read only when used."""

    dirs: tuple[Path, ...]
    allow_pickle: bool = False
    digest_cache: DigestCache | None = None
    files: dict[str, Path] = field(init=False)
    _loaded: dict[str, TextualInversion] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.files = {}
        for folder in self.dirs:
            if not folder.is_dir():
                raise SpecError(f"generation.embedding_dirs: {folder} is not a folder; fix the path.")
            for path in sorted(folder.rglob("*")):
                if not path.is_file() or path.suffix.lower() not in SAFE_SUFFIXES + PICKLE_SUFFIXES:
                    continue
                if path.stem in self.files and self.files[path.stem] != path:
                    raise SpecError(f"generation.embedding_dirs: two embeddings are named '{path.stem}' "
                                    f"({self.files[path.stem]} and {path}); rename or remove one.")
                self.files[path.stem] = path

    @classmethod
    def of_files(cls, files: dict[str, Path], allow_pickle: bool = False) -> EmbeddingLibrary:
        """A library of files already found (by another process's scan of the same folders)."""
        library = cls((), allow_pickle)
        library.files = dict(files)
        return library

    def sha256(self, name: str) -> str:
        return sha256_file(self.files[name], self.digest_cache)

    def load(self, name: str) -> TextualInversion:
        if name not in self._loaded:
            self._loaded[name] = load_textual_inversion(self.files[name], self.allow_pickle)
        return self._loaded[name]

    def used_in(self, prompt: str, negative: bool = False, steps: int = 1000) -> list[str]:
        """Names of the embeddings a prompt uses at any of its ``steps``, found as the conditioning finds them."""
        if not self.files:
            return []
        try:
            schedule = scheduled_prompts(prompt, steps, negative=negative)
        except PromptSyntaxError:
            return []  # the image fails on its prompt and uses nothing
        lookup = _name_lookup(tuple(sorted(self.files)))
        texts = [s.text for _, parsed in schedule for s in parsed.segments if isinstance(s, WeightedText)]
        runs = tokenize_segments(clip_tokenizer(), texts)
        return sorted({found.name for ids in runs for found in embeddings_in_tokens(ids, lookup)})

    def near_misses(self, prompts: Iterable[tuple[str, bool]]) -> list[str]:
        """Words that look like an embedding's name but do not name it (e.g. 'easy_negative'), for each
        (prompt, is_negative) whose own text does not use that embedding."""
        return [near_miss_note(word, name) for word, name in self.near_miss_pairs(prompts)]

    def near_miss_pairs(self, prompts: Iterable[tuple[str, bool]]) -> list[tuple[str, str]]:
        """(prompt word, embedding name) of every near miss ``near_misses`` describes, sorted."""
        if not self.files:
            return []
        normalised = {_normalise(name): name for name in self.files}
        pairs: set[tuple[str, str]] = set()
        for prompt, negative in prompts:
            used = set(self.used_in(prompt, negative))  # at any step
            for word in set(re.split(r"[\s,]+", strip_prompt_syntax(prompt))):
                key = _normalise(word)
                if len(key) < 4 or word in self.files:
                    continue
                close = difflib.get_close_matches(key, normalised, n=1, cutoff=0.85)
                if close and normalised[close[0]] not in used:
                    pairs.add((word, normalised[close[0]]))
        return sorted(pairs)


def near_miss_note(word: str, name: str) -> str:
    return f"'{word}' looks like embedding '{name}' but does not name it"


def _normalise(word: str) -> str:
    return re.sub(r"[^0-9a-z]", "", word.lower())


@functools.lru_cache(maxsize=8)
def _name_lookup(names: Sequence[str]) -> dict:
    # Vector counts are not needed to find names; 1 stands in until a file is read.
    return embedding_lookup(clip_tokenizer(), [(name, 1) for name in names])
