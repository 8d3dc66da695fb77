"""The report's "grid image" button: each seed grid drawn once as a labelled image (checkpoints × seeds,
captioned with the prompt, the checkpoint names and every picture's scores) from the report's thumbnails.

Made from the 128-pixel thumbnails, so a report stays small and fast to write; ``ckptbench grid`` draws
the same grids from the full PNGs. A file is named by a digest of everything drawn in it, so a re-render
draws only grids whose content changed, and files of grids no longer in the report are removed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from ckptbench.atomic import atomic_write_bytes
from ckptbench.report.grids import GridCell, SeedGrid
from ckptbench.share.grid import grid_file
from ckptbench.share.grid_image import GridCellContent, GridContent, GridStyle, caption_lines, render_grid

FOLDER = "grids"
STYLE = GridStyle(size=128, font_size=13, margin=10, gap=4)
# The pictures are thumbnails already (WebP at quality 70): re-encoding them at 75 keeps what they show and
# keeps the grid images about as large as the thumbnails they are drawn from (benchmarks/share_outputs.py).
QUALITY = 75


def with_grid_images(grids: Sequence[SeedGrid], report_dir: Path) -> list[SeedGrid]:
    """The grids with ``grid_image`` set (a path relative to the report folder) for those with pictures."""
    folder = report_dir / FOLDER
    kept: set[str] = set()
    result = []
    for grid in grids:
        if not grid.has_images:
            result.append(grid)
            continue
        content = _content(grid, report_dir)
        digest = hashlib.sha256(json.dumps(_describe(grid), sort_keys=True).encode()).hexdigest()[:16]
        name = f"{grid.anchor}-{digest}.webp"
        kept.add(name)
        if not (folder / name).is_file():
            image, _ = render_grid(content, STYLE)
            metadata = {"prompt": grid.prompt, "suite": grid.suite, "case_id": grid.case_id,
                        "x": {"factor": "seed", "values": [str(s) for s in grid.seeds]},
                        "y": {"factor": "checkpoint", "labels": [label for label, _ in _planned_rows(grid)]}}
            atomic_write_bytes(folder / name, grid_file(image, metadata, "webp", QUALITY))
        result.append(replace(grid, grid_image=f"{FOLDER}/{name}"))
    if folder.is_dir():
        for stale in folder.glob("*.webp"):
            if stale.name not in kept:
                stale.unlink()
    return result


def _planned_rows(grid: SeedGrid) -> list[tuple[str, list[GridCell]]]:
    """The grid's rows with at least one planned image (a checkpoint that failed to load has none)."""
    return [(label, row) for label, row in grid.rows if any(cell.image_key for cell in row)]


def _content(grid: SeedGrid, report_dir: Path) -> GridContent:
    cells = []
    rows = _planned_rows(grid)
    for _, row in rows:
        cells.append(tuple(
            None if cell.image_key is None else GridCellContent(
                image=report_dir / cell.thumbnail_url if cell.thumbnail_url else None,
                captions=caption_lines(grid.scorers, {s: v for s, (v, _) in zip(grid.scorers, cell.values,
                                                                                 strict=True)}),
                failure=None if cell.thumbnail_url else "no image")
            for cell in row))
    return GridContent(title=grid.prompt, subtitle=f"{grid.suite} · {grid.label}",
                       column_labels=tuple(f"seed {seed}" for seed in grid.seeds),
                       row_labels=tuple(label for label, _ in rows), cells=tuple(cells),
                       caption_lines=len(grid.scorers))


def _describe(grid: SeedGrid) -> dict[str, object]:
    """Everything the image shows, for its file name: change any of it and the image is drawn again."""
    return {"prompt": grid.prompt, "suite": grid.suite, "label": grid.label, "seeds": grid.seeds,
            "scorers": grid.scorers, "style": repr(STYLE), "quality": QUALITY,
            "rows": [[label, [[c.image_key, c.thumbnail_url, [v for v, _ in c.values]] for c in row]]
                     for label, row in grid.rows]}
