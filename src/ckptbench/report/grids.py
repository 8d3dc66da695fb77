"""Seed grids: for each prompt, checkpoints as rows and seeds as columns, built from the tidy score table.

The same seed sits in the same column for every checkpoint, so a difference between two rows is the
checkpoints' doing, not the starting noise's. A cell carries the thumbnail (when the run has images),
the full PNG's address relative to the report, and every scorer's value with its place between the
prompt's worst and best image (for the cell colour).
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from ckptbench.report.matrices import heat

SEEDS_PER_BLOCK_WITH_IMAGES = 8  # 8 thumbnails of 120 px and the names fit in 1280 px
SEEDS_PER_BLOCK = 16


@dataclass(frozen=True)
class GridCell:
    image_key: str | None
    image_url: str | None  # the full PNG, relative to the report folder
    thumbnail_url: str | None
    values: list[tuple[float | None, float | None]]  # per scorer of the grid: (value, heat 0..1)
    reason: str = ""  # why the image (or a score of it) is missing, shown on hover


@dataclass(frozen=True)
class SeedGrid:
    anchor: str  # HTML id, also the infotext script's name
    suite: str
    case_id: str
    label: str
    prompt: str
    seeds: list[int]
    scorers: list[str]
    rows: list[tuple[str, list[GridCell]]]  # (row label: the checkpoint, with the sweep variant if any; cells)
    grid_image: str | None = None  # the grid drawn as one labelled image, relative to the report folder

    @property
    def has_images(self) -> bool:
        return any(cell.image_url for _, cells in self.rows for cell in cells)

    @property
    def infotext_script(self) -> str:
        return f"infotext/{self.anchor}.js"

    @property
    def column_groups(self) -> list[list[int]]:
        """Seed columns in blocks that fit a laptop screen side by side (8 thumbnails, or 16 cells of scores
        alone), so a 32-seed grid is four rows of blocks instead of one table four screens wide."""
        size = SEEDS_PER_BLOCK_WITH_IMAGES if self.has_images else SEEDS_PER_BLOCK
        return [list(range(start, min(start + size, len(self.seeds)))) for start in range(0, len(self.seeds), size)]


def grid_anchor(suite: str, case_id: str) -> str:
    digest = hashlib.sha1(f"{suite}\0{case_id}".encode()).hexdigest()[:12]
    return f"grid-{digest}"


def image_url(store_root: Path, image: str, report_dir: Path) -> str:
    """A relative URL from the report folder to a store image: valid wherever the two folders are
    copied together, from the file system or a static host."""
    relative = os.path.relpath(store_root / image, report_dir)
    return quote(Path(relative).as_posix())


def build_grids(frame: pd.DataFrame, checkpoints: Sequence[str], scorers: Sequence[str],
                directions: Mapping[str, bool | None], labels: Mapping[tuple[str, str], str],
                image_urls: Mapping[str, str], thumbnails: Mapping[str, str],
                reasons: Mapping[str, str] | None = None, row_reasons: Mapping[str, str] | None = None
                ) -> list[SeedGrid]:
    """One grid per (suite, case) of ``frame``, rows in ``checkpoints`` order (every checkpoint gets a
    row, empty where it made nothing; with a sweep, one row per checkpoint and variant), columns the case's
    seeds in ascending order. ``reasons``: image key → why that image or one of its scores is missing;
    ``row_reasons``: checkpoint → why it made nothing."""
    reasons, row_reasons = reasons or {}, row_reasons or {}
    # One pass over plain tuples: pandas' per-cell lookups cost ~0.2 ms each, minutes for 10,000 images.
    cases: dict[tuple[str, str], dict[tuple[str, int], _Cell]] = {}
    prompts: dict[tuple[str, str], str] = {}
    if "variant" not in frame.columns:
        frame = frame.assign(variant="")
    columns = ["suite", "case_id", "checkpoint", "seed", "scorer", "value", "image_key", "image", "prompt", "variant"]
    sweep_variants: dict[str, None] = {}
    for suite, case_id, checkpoint, seed, scorer, value, image_key, image, prompt, variant in frame[
            columns].itertuples(index=False, name=None):
        case = (str(suite), str(case_id))
        prompts.setdefault(case, str(prompt))
        sweep_variants.setdefault(str(variant or ""))
        row = row_label(str(checkpoint), str(variant or ""))
        cell = cases.setdefault(case, {}).setdefault((row, int(seed)),
                                                     _Cell(str(image_key), image if isinstance(image, str) else None))
        cell.values[str(scorer)] = _finite(value)
    row_labels = [(row_label(checkpoint, variant), checkpoint) for checkpoint in checkpoints
                  for variant in sweep_variants]
    grids = []
    for (suite, case_id), cells in cases.items():
        present = {scorer for cell in cells.values() for scorer in cell.values}
        grid_scorers = [s for s in scorers if s in present] + sorted(present - set(scorers))
        seeds = sorted({seed for _, seed in cells})
        keys = list(cells)
        heats = {s: dict(zip(keys, heat([cells[k].values.get(s) for k in keys], directions.get(s)), strict=True))
                 for s in grid_scorers}
        rows = []
        for checkpoint, owner in row_labels:
            row = []
            for seed in seeds:
                cell = cells.get((checkpoint, seed))
                if cell is None:
                    row.append(GridCell(None, None, None, [(None, None)] * len(grid_scorers),
                                        row_reasons.get(owner, "")))
                    continue
                has_image = cell.image is not None
                row.append(GridCell(
                    image_key=cell.image_key,
                    image_url=image_urls.get(cell.image_key) if has_image else None,
                    thumbnail_url=thumbnails.get(cell.image_key) if has_image else None,
                    values=[(cell.values.get(s), heats[s][(checkpoint, seed)]) for s in grid_scorers],
                    reason=reasons.get(cell.image_key) or ("" if has_image else row_reasons.get(owner, "")),
                ))
            rows.append((checkpoint, row))
        grids.append(SeedGrid(anchor=grid_anchor(suite, case_id), suite=suite, case_id=case_id,
                              label=labels.get((suite, case_id)) or case_id, prompt=prompts[(suite, case_id)],
                              seeds=seeds, scorers=grid_scorers, rows=rows))
    return grids


def row_label(checkpoint: str, variant: str) -> str:
    """A grid row's name: the checkpoint, and the sweep variant when the run has one ("a · cfg=7")."""
    return f"{checkpoint} · {variant}" if variant else checkpoint


@dataclass
class _Cell:
    image_key: str
    image: str | None
    values: dict[str, float | None] = field(default_factory=dict)


def _finite(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None
