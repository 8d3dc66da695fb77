"""``ckptbench grid``: labelled X/Y/Z grid images of a run, the picture people post.

Two factors of the run span a grid (X: columns, Y: rows; by default seeds — or the first sweep axis — by
checkpoints); every combination of the other factors (the prompt, the seed, the other axes) gets its own
file. Each picture is captioned with its scores, the grid with the prompt and what it holds fixed, and
the PNG carries the labels and image keys as text (``ckptbench-grid``: JSON) so a reader or a test can
tell exactly what every cell shows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ckptbench import __version__
from ckptbench.atomic import atomic_write_bytes
from ckptbench.errors import CkptbenchError
from ckptbench.share.cells import Cell, RunCells
from ckptbench.share.grid_image import GridCellContent, GridContent, GridStyle, caption_lines, render_grid
from ckptbench.share.image_files import QUALITY, SUFFIXES, ImageFormat, encode_image
from ckptbench.spec_errors import did_you_mean
from ckptbench.sweep import AXIS_TITLES

METADATA_KEY = "ckptbench-grid"


@dataclass(frozen=True)
class PlannedGrid:
    name: str  # file name without suffix
    content: GridContent
    metadata: dict[str, Any]


def default_axes(run: RunCells) -> tuple[str, str]:
    """(X, Y): the first sweep axis (else the seeds) by the checkpoints, as A1111 users expect."""
    return (run.axes[0].name if run.axes else "seed"), "checkpoint"


def plan_grids(run: RunCells, cells: Sequence[Cell], x: str, y: str, scorers: Sequence[str]) -> list[PlannedGrid]:
    """One grid per combination of the factors besides ``x`` and ``y``, in the run's order."""
    for side, factor in (("--x", x), ("--y", y)):
        if factor not in run.factors:
            hint = did_you_mean(factor, run.factors)
            raise CkptbenchError(f"{side} {factor}: not a factor of this run{hint}; use one of "
                                 f"{', '.join(run.factors)}.")
    if x == y:
        raise CkptbenchError(f"--x and --y are both '{x}'; give two different factors.")
    unknown = [name for name in scorers if name not in run.scorers]
    if unknown:
        hint = did_you_mean(unknown[0], run.scorers)
        raise CkptbenchError(f"--scorer {unknown[0]}: not a scorer of this run{hint}; use one of "
                             f"{', '.join(run.scorers) or '(none)'}, or 'none'.")
    if not cells:
        raise CkptbenchError("no image of this run matches the --only filters; loosen them.")
    rest = [factor for factor in run.factors if factor not in (x, y)]
    groups: dict[tuple[str, ...], list[Cell]] = {}
    for cell in cells:
        groups.setdefault(tuple(cell.factor(f) for f in rest), []).append(cell)
    return [_plan_one(run, group, x, y, rest, key, scorers) for key, group in groups.items()]


def _plan_one(run: RunCells, cells: list[Cell], x: str, y: str, rest: list[str], fixed: tuple[str, ...],
              scorers: Sequence[str]) -> PlannedGrid:
    columns, rows = run.values(x, cells), run.values(y, cells)
    by_position = {(cell.factor(y), cell.factor(x)): cell for cell in cells}
    first = cells[0]
    fixed_values = dict(zip(rest, fixed, strict=True))
    content = GridContent(
        title=first.prompt if "prompt" in rest else "prompts of " + ", ".join(dict.fromkeys(c.suite for c in cells)),
        subtitle=" · ".join(_fixed_label(run, factor, value, first) for factor, value in fixed_values.items()),
        column_labels=tuple(_value_label(run, x, value) for value in columns),
        row_labels=tuple(_value_label(run, y, value) for value in rows),
        cells=tuple(tuple(_cell_content(by_position.get((row, column)), scorers) for column in columns)
                    for row in rows),
        caption_lines=len(scorers))
    metadata = {
        "ckptbench": __version__, "store": str(run.store), "run": run.run_id, "title": content.title,
        "prompt": first.prompt if "prompt" in rest else None,
        "x": {"factor": x, "values": columns, "labels": list(content.column_labels)},
        "y": {"factor": y, "values": rows, "labels": list(content.row_labels)},
        "fixed": fixed_values, "scorers": list(scorers),
        "cells": [[_cell_record(by_position.get((row, column))) for column in columns] for row in rows],
    }
    name = "_".join(_slug(_fixed_name(factor, value)) for factor, value in fixed_values.items()) or "grid"
    return PlannedGrid(name, content, metadata)


def _value_label(run: RunCells, factor: str, value: str) -> str:
    if factor == "seed":
        return f"seed {value}"
    if factor == "prompt":
        case = next(cell for cell in run.cells if cell.factor("prompt") == value)
        return case.label if case.label != case.case_id else case.prompt
    if factor == "checkpoint":
        return value
    return f"{AXIS_TITLES.get(factor, factor)}: {value}"


def _fixed_label(run: RunCells, factor: str, value: str, first: Cell) -> str:
    if factor == "prompt":
        return f"{first.suite} · {first.label}"
    return _value_label(run, factor, value)


def _fixed_name(factor: str, value: str) -> str:
    if factor == "prompt":
        return value.replace("/", "-")
    return value if factor == "checkpoint" else f"{factor}-{value}"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-.") or "x"


def _cell_content(cell: Cell | None, scorers: Sequence[str]) -> GridCellContent | None:
    if cell is None:
        return None
    return GridCellContent(image=cell.image, captions=caption_lines(scorers, cell.scores),
                           failure=None if cell.image else cell.failure)


def _cell_record(cell: Cell | None) -> dict[str, Any] | None:
    if cell is None:
        return None
    return {"image_key": cell.image_key, "checkpoint": cell.checkpoint, "suite": cell.suite, "case_id": cell.case_id,
            "seed": cell.seed, "variant": cell.variant, "scores": cell.scores, "failure": cell.failure}


def write_grids(planned: Sequence[PlannedGrid], out: Path, image_format: ImageFormat, style: GridStyle,
                progress: Callable[[int, int], None] | None = None) -> list[Path]:
    """Render and write every grid into ``out`` (names made unique); returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    used: set[str] = set()
    for count, grid in enumerate(planned, start=1):
        image, layout = render_grid(grid.content, style)
        metadata = {**grid.metadata, "layout": {
            "width": layout.width, "height": layout.height, "cell": [layout.cell_width, layout.cell_height],
            "left": layout.left, "top": layout.top, "caption_height": layout.caption_height, "gap": layout.gap}}
        path = out / (_unique(grid.name, used) + SUFFIXES[image_format])
        atomic_write_bytes(path, grid_file(image, metadata, image_format))
        written.append(path)
        if progress:
            progress(count, len(planned))
    return written


def grid_file(image: Image.Image, metadata: dict[str, Any], image_format: ImageFormat, quality: int = QUALITY
              ) -> bytes:
    """The encoded grid with its labels: PNG text chunks, or EXIF for JPEG/WebP (at ``quality``)."""
    texts = {"Title": str(metadata.get("title") or metadata.get("prompt") or ""),
             "Software": f"ckptbench {__version__}", METADATA_KEY: json.dumps(metadata, ensure_ascii=False)}
    return encode_image(image, image_format, texts, comment_key=METADATA_KEY, quality=quality)


def _unique(name: str, used: set[str]) -> str:
    candidate, counter = name, 2
    while candidate in used:
        candidate, counter = f"{name}-{counter}", counter + 1
    used.add(candidate)
    return candidate
