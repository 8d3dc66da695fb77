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
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from ckptbench.report.matrices import heat

CELL_KEYS = ["suite", "case_id", "checkpoint", "seed"]


@dataclass(frozen=True)
class GridCell:
    image_key: str | None
    image_url: str | None  # the full PNG, relative to the report folder
    thumbnail_url: str | None
    values: list[tuple[float | None, float | None]]  # per scorer of the grid: (value, heat 0..1)


@dataclass(frozen=True)
class SeedGrid:
    anchor: str  # HTML id, also the infotext script's name
    suite: str
    case_id: str
    label: str
    prompt: str
    seeds: list[int]
    scorers: list[str]
    rows: list[tuple[str, list[GridCell]]]

    @property
    def has_images(self) -> bool:
        return any(cell.image_url for _, cells in self.rows for cell in cells)

    @property
    def infotext_script(self) -> str:
        return f"infotext/{self.anchor}.js"


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
                image_urls: Mapping[str, str], thumbnails: Mapping[str, str]) -> list[SeedGrid]:
    """One grid per (suite, case) of ``frame``, rows in ``checkpoints`` order (every checkpoint gets a
    row, empty where it made nothing), columns the case's seeds in ascending order."""
    if frame.empty:
        return []
    values = frame.groupby([*CELL_KEYS, "scorer"], sort=False)["value"].first().unstack("scorer").sort_index()
    images = frame.drop_duplicates(CELL_KEYS).set_index(CELL_KEYS)[["image_key", "image"]].sort_index()
    grids = []
    for (suite, case_id), case_rows in frame.groupby(["suite", "case_id"], sort=False):
        suite, case_id = str(suite), str(case_id)
        present = [s for s in scorers if case_rows["scorer"].eq(s).any()]
        seeds = sorted(int(s) for s in case_rows["seed"].unique())
        case_values = values.loc[(suite, case_id)]
        case_images = images.loc[(suite, case_id)]
        heats = {s: _case_heat(case_values[s], directions.get(s)) for s in present}
        rows = []
        for checkpoint in checkpoints:
            cells = []
            for seed in seeds:
                key = (checkpoint, seed)
                if key not in case_images.index:
                    cells.append(GridCell(None, None, None, [(None, None)] * len(present)))
                    continue
                image_key = str(case_images.at[key, "image_key"])
                has_image = isinstance(case_images.at[key, "image"], str)
                cells.append(GridCell(
                    image_key=image_key,
                    image_url=image_urls.get(image_key) if has_image else None,
                    thumbnail_url=thumbnails.get(image_key) if has_image else None,
                    values=[(_finite(case_values.at[key, s]), heats[s].get(key)) for s in present],
                ))
            rows.append((checkpoint, cells))
        prompt = str(case_rows["prompt"].iloc[0])
        grids.append(SeedGrid(anchor=grid_anchor(suite, case_id), suite=suite, case_id=case_id,
                              label=labels.get((suite, case_id)) or case_id, prompt=prompt, seeds=seeds,
                              scorers=present, rows=rows))
    return grids


def _case_heat(column: pd.Series, higher_is_better: bool | None) -> dict[tuple[str, int], float | None]:
    keys = list(column.index)
    return dict(zip(keys, heat([_finite(v) for v in column.to_numpy()], higher_is_better), strict=True))


def _finite(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return number if math.isfinite(number) else None
