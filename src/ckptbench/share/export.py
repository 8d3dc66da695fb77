"""``ckptbench export images``: a run's images under names people can read, with their infotext kept.

The store keeps images as ``images/ab/<sha256>.png`` (content-addressed, shared between runs). An export
copies them into folders by checkpoint or by case::

    --by checkpoint   OUT/<checkpoint>/<suite>/<case>-<prompt words>[_<variant>]_seed<N>.png
    --by case         OUT/<suite>/<case>-<prompt words>/<checkpoint>[_<variant>]_seed<N>.png

PNGs are copied byte for byte (their ``parameters`` chunk is the A1111 infotext); JPEG and WebP copies
carry the infotext in EXIF UserComment, where A1111 writes it. ``OUT/index.csv`` lists every file with its
checkpoint, case, prompt, seed, variant, image key and scores.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd
from PIL import Image

from ckptbench.atomic import atomic_write_bytes, atomic_write_text
from ckptbench.prompt import strip_prompt_syntax
from ckptbench.share.cells import Cell, RunCells
from ckptbench.share.image_files import SUFFIXES, ImageFormat, encode_image
from ckptbench.store import Store

ExportBy = Literal["checkpoint", "case"]
WORDS = 48  # characters of the prompt in a name: enough to recognise it, short enough for every file system


@dataclass(frozen=True)
class ExportResult:
    files: list[Path]
    index: Path
    skipped: int  # planned images that do not exist (failed)


def export_name(cell: Cell, by: ExportBy, suffix: str = ".png") -> Path:
    """The file's path inside the export folder."""
    case = _safe(f"{cell.case_id}-{_words(cell)}")
    image = f"_{_safe(cell.variant)}" if cell.variant else ""
    if by == "checkpoint":
        return Path(_safe(cell.checkpoint)) / _safe(cell.suite) / f"{case}{image}_seed{cell.seed}{suffix}"
    return Path(_safe(cell.suite)) / case / f"{_safe(cell.checkpoint)}{image}_seed{cell.seed}{suffix}"


def export_images(run: RunCells, cells: Sequence[Cell], store: Store, out: Path, by: ExportBy,
                  image_format: ImageFormat = "png", progress: Callable[[int, int], None] | None = None
                  ) -> ExportResult:
    present = [cell for cell in cells if cell.image is not None and cell.image.is_file()]
    infotexts = store.image_infotexts([cell.image_key for cell in present]) if image_format != "png" else {}
    files: list[Path] = []
    rows = []
    for count, cell in enumerate(present, start=1):
        relative = export_name(cell, by, SUFFIXES[image_format])
        target = out / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        assert cell.image is not None
        if image_format == "png":
            atomic_write_bytes(target, cell.image.read_bytes())  # the PNG already carries its infotext
        else:
            with Image.open(cell.image) as image:
                image.load()
                text = infotexts.get(cell.image_key) or str(image.info.get("parameters") or "")
                atomic_write_bytes(target, encode_image(image, image_format, {"parameters": text}))
        files.append(target)
        rows.append({"file": relative.as_posix(), "checkpoint": cell.checkpoint, "suite": cell.suite,
                     "case_id": cell.case_id, "label": cell.label, "prompt": cell.prompt, "seed": cell.seed,
                     "variant": cell.variant, "image_key": cell.image_key,
                     **{scorer: cell.scores.get(scorer) for scorer in run.scorers}})
        if progress:
            progress(count, len(present))
    index = out / "index.csv"
    columns = ["file", "checkpoint", "suite", "case_id", "label", "prompt", "seed", "variant", "image_key",
               *run.scorers]
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(index, pd.DataFrame(rows, columns=columns).to_csv(index=False))
    return ExportResult(files, index, len(cells) - len(present))


def _words(cell: Cell) -> str:
    """The case's label when it has one, else the start of its prompt, as plain words."""
    text = cell.label if cell.label != cell.case_id else strip_prompt_syntax(cell.prompt)
    words = re.sub(r"[^\w]+", "-", text.lower()).strip("-")
    if len(words) > WORDS:
        words = words[:WORDS].rsplit("-", 1)[0]
    return words or "prompt"


def _safe(text: str) -> str:
    """A file or folder name that every common file system accepts (no separators, no reserved characters)."""
    cleaned = re.sub(r'[<>:"/\\|?*\x00-\x1f]+', "-", text).replace(", ", "_").replace(" ", "-")
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip(" .-")
    return cleaned[:120] or "x"
