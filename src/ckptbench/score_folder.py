"""``ckptbench score DIR``: score images made elsewhere (A1111, ComfyUI, other tools) with the spec's scorers.

Each image's prompt comes from its A1111 infotext (the PNG ``parameters`` text), else from a sidecar
``<name>.txt`` beside it, else it has none and prompt scorers skip it. Images are known by the sha256
of their file, so scoring the same folder again with ``--store`` computes nothing. Set-level scorers
score the whole folder as one set.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from ckptbench.errors import CkptbenchError
from ckptbench.hashing import sha256_file
from ckptbench.infotext import parse_infotext
from ckptbench.metrics.engine import (
    PreparedScorer,
    ScoreCell,
    execute_scoring,
    plan_scoring,
    prepare_scorers,
    rows_for,
)
from ckptbench.metrics.references import IMAGE_SUFFIXES
from ckptbench.metrics.set_engine import execute_sets, plan_sets, set_key
from ckptbench.spec import ScorersSpec
from ckptbench.store import Store

if TYPE_CHECKING:  # the command writes its CSV without pandas; ``frame`` imports it for callers that want one
    import pandas as pd

CSV_COLUMNS = ["image", "prompt", "prompt_source", "scorer", "value"]


@dataclass
class FolderScores:
    rows: list[dict[str, Any]]  # one per image × scorer (and one per set scorer for the whole folder)
    failures: list[str] = field(default_factory=list)
    truncated: dict[str, dict[str, int]] = field(default_factory=dict)
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(self.rows, columns=CSV_COLUMNS)

    def csv_text(self) -> str:
        """The rows as CSV (a missing value is an empty field, as pandas writes NaN)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**row, "value": "" if row["value"] is None else row["value"]} for row in self.rows)
        return buffer.getvalue()

    @property
    def scored(self) -> int:
        return sum(row["value"] is not None for row in self.rows)

    @property
    def images(self) -> int:
        return len({row["image"] for row in self.rows})


def find_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden folders skipped), sorted by path."""
    if not folder.is_dir():
        raise CkptbenchError(f"{folder}: not a folder; give the folder of images to score.")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def image_prompt(path: Path) -> tuple[str, str]:
    """(prompt, where it came from): the A1111 infotext, a sidecar .txt, or none."""
    try:
        with Image.open(path) as image:
            parameters = image.info.get("parameters")
    except OSError:
        parameters = None
    if isinstance(parameters, str) and parameters.strip():
        return parse_infotext(parameters).prompt, "infotext"
    sidecar = path.with_suffix(".txt")
    if sidecar.is_file():
        return parse_infotext(sidecar.read_text(encoding="utf-8", errors="replace")).prompt, "sidecar"
    return "", "none"


def score_folder(folder: Path, scorers: ScorersSpec, store: Store, device: torch.device,
                 advance: Callable[[str, int, int], None] | None = None) -> FolderScores:
    prepared = prepare_scorers(scorers, device, store)
    images = find_images(folder)
    if not images:
        raise CkptbenchError(f"{folder}: no images found ({', '.join(IMAGE_SUFFIXES)}); give a folder of images.")
    prompts = {path: image_prompt(path) for path in images}
    cells = [ScoreCell(item=index, checkpoint="", suite=folder.name, image_key=f"file:{sha256_file(path, store)}",
                       image_path=path, prompt=prompts[path][0]) for index, path in enumerate(images)]
    plan = plan_scoring(store, None, prepared, cells)
    set_plan = plan_sets(store, None, prepared, cells)
    report = execute_scoring(store, prepared, plan, device, advance)
    set_report = execute_sets(store, prepared, set_plan, device, advance)
    failures = [f"{scorer}: {message}" for scorer, _key, message in report.failures]
    failures += [f"{scorer}: {message}" for scorer, _c, _s, message in set_report.failures]

    rows = []
    by_key = {cell.image_key: cell for cell in cells}
    for entry in prepared:
        if entry.scorer.level == "set":
            assert entry.references is not None
            value = store.set_score(entry.info.key, set_key(cells, entry.references.key))
            rows.append({"image": str(folder), "prompt": "", "prompt_source": "", "scorer": entry.name,
                         "value": value})
            continue
        answered = _answered_rows(store, entry, cells)
        for cell in cells:
            if cell.image_key not in answered:
                continue
            path = by_key[cell.image_key].image_path
            rows.append({"image": str(cell.image_path), "prompt": cell.prompt, "prompt_source": prompts[path][1],
                         "scorer": entry.name, "value": answered[cell.image_key]})
    return FolderScores(rows, failures, plan.truncated, plan.skipped)


def _answered_rows(store: Store, entry: PreparedScorer, cells: list[ScoreCell]) -> dict[str, float | None]:
    """image key → value (None where scoring failed) for the cells this scorer answers."""
    rows, _ = rows_for(entry, cells)
    values = store.score_values(entry.info.key, [(row.cell.image_key, row.context) for row in rows])
    return {row.cell.image_key: values.get((row.cell.image_key, row.context)) for row in rows}
