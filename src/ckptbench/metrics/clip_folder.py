"""Which transformers CLIP folder layouts we read, checked without loading a model.

A CLIP folder is usable when ``from_pretrained`` finds weights, an image processor and a tokenizer in it.
The layouts the pinned transformers writes and reads:

* the hub layout (``openai/clip-vit-large-patch14``): ``config.json``, ``model.safetensors`` (or sharded
  ``model-*.safetensors``, or ``pytorch_model.bin``), ``preprocessor_config.json`` and the tokenizer as
  ``vocab.json`` + ``merges.txt`` and/or ``tokenizer.json``;
* ``CLIPModel.save_pretrained`` + ``CLIPProcessor.save_pretrained`` in transformers 5: the image processor's
  settings inside ``processor_config.json`` (key ``image_processor``) and no ``preprocessor_config.json``,
  the tokenizer as ``tokenizer.json``;
* a weights-only folder (PickScore) whose processor comes from another folder named by the scorer.

``clip_folder_problem`` says in one sentence what is missing (for ``ckptbench validate``);
``locate_clip_folder`` raises it as an error naming the scorer and the spec key to fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ckptbench.errors import WeightsUnavailableError

PREPROCESSOR_CONFIG = "preprocessor_config.json"  # the image processor alone (hub layout, transformers 4)
PROCESSOR_CONFIG = "processor_config.json"  # the whole processor (transformers 5 CLIPProcessor.save_pretrained)
TOKENIZER_JSON = "tokenizer.json"
BPE_FILES = ("vocab.json", "merges.txt")


@dataclass(frozen=True)
class ClipFolder:
    model: Path  # config.json and weights
    weights: tuple[Path, ...]  # every file whose values the features depend on
    processor: Path  # image processor and tokenizer files (the model folder unless they live elsewhere)


def weight_files(folder: Path) -> list[Path]:
    """The weights ``from_pretrained`` reads: safetensors files (all shards) if any, else ``*.bin``."""
    return sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))


def has_image_processor(folder: Path) -> bool:
    if (folder / PREPROCESSOR_CONFIG).is_file():
        return True
    config = folder / PROCESSOR_CONFIG
    if not config.is_file():
        return False
    try:
        return isinstance(json.loads(config.read_text(encoding="utf-8")).get("image_processor"), dict)
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        return False


def has_tokenizer(folder: Path) -> bool:
    return (folder / TOKENIZER_JSON).is_file() or all((folder / name).is_file() for name in BPE_FILES)


def processor_problem(folder: Path) -> str | None:
    """What keeps ``folder`` from providing a CLIP image processor and tokenizer (None: nothing)."""
    missing = []
    if not has_image_processor(folder):
        missing.append(f"an image processor ({PREPROCESSOR_CONFIG}, or {PROCESSOR_CONFIG} with an "
                       "'image_processor' entry)")
    if not has_tokenizer(folder):
        missing.append(f"a tokenizer ({TOKENIZER_JSON}, or {' + '.join(BPE_FILES)})")
    return f"{folder} has no {' and no '.join(missing)}" if missing else None


def clip_folder_problem(folder: Path, processor: Path | None = None) -> str | None:
    """One sentence saying why ``folder`` (with processor files from ``processor`` if given) is not a usable
    transformers CLIP folder, or None when it is."""
    if not folder.is_dir():
        return f"{folder} is not a folder"
    if not (folder / "config.json").is_file():
        return f"{folder} has no config.json"
    if not weight_files(folder):
        return f"{folder} holds no model weights (*.safetensors or *.bin)"
    problem = processor_problem(folder)
    if problem is not None and processor is not None:
        problem = processor_problem(processor)
    return problem


def locate_clip_folder(folder: Path, processor: Path | None, scorer: str) -> ClipFolder:
    """The folder's weights and where its processor files are; ``processor`` is used only when the folder
    lacks them (models shipped as weights only)."""
    problem = clip_folder_problem(folder, processor)
    if problem is not None:
        raise WeightsUnavailableError(f"scorer '{scorer}': {problem}; give a complete transformers CLIP folder "
                                      f"as [scorers.{scorer}] model.")
    uses_own = processor_problem(folder) is None
    return ClipFolder(model=folder, weights=tuple(weight_files(folder)),
                      processor=folder if uses_own or processor is None else processor)


def scorer_folder_problem(model: str, processor: str | None, scorer: str) -> str | None:
    """For ``ckptbench validate``: one sentence on what keeps a CLIP scorer's model folder (a local folder or
    a hub id in the local cache) from loading, or None. Neither loads nor hashes anything."""
    from ckptbench.metrics.weights import resolve_folder

    try:
        folder = resolve_folder(model, scorer)
        extra = resolve_folder(processor, scorer) if processor and processor_problem(folder) else None
    except WeightsUnavailableError as error:
        return str(error)
    problem = clip_folder_problem(folder, extra)
    return None if problem is None else (f"scorer '{scorer}': {problem}; give a complete transformers CLIP folder as "
                                         f"[scorers.{scorer}] model.")
