"""Import GhostReview's published per-image results into a store, as a run like any other.

Read from the release folder (``ROOT``):

* ``dataresult/ImageRatingDataFrame/<checkpoint>-<prompt>.csv`` — quality suite, one row per image:
  ``LAIONScore`` → ``laion-aesthetic-v2``, ``ClipScore`` → ``clip-cosine``, ``Rating`` → ``kenjiqq-rating``,
  ``Artifact`` → ``kenjiqq-artifacts``; ``ImageIndex`` is the seed. A column absent from a file (one
  checkpoint has no Rating/Artifact) becomes missing cells, reported as such.
* ``dataresult/ImageRatingDataFrameStyle/<checkpoint>-Style-<style>.csv`` — one row per (image, reference
  image) with the unnormalised Gram ``StyleLoss``; an image's loss is the mean over its style's references,
  as GhostReview computes it. The seed is the second field of the image file name (``00007-8-….png``).
* ``dataresult/ImageRatingDataFrameLoRA/<checkpoint>-LoRA-<lora>.csv`` — one row per image, ``StyleLoss``
  against the LoRA's showcase image; the seed again from the file name.

Checkpoint names are everything before the last ``-<number>`` (``-Style-<n>``, ``-LoRA-<n>``): names may
contain dashes (``GhostMix-V2.0-fp16-NoVAE``). Prompts, styles and the showcase checkpoints (NoTM) come
from ``PromptsForReviews/`` when it is there.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ckptbench.errors import DataImportError, SuiteError
from ckptbench.hashing import content_key
from ckptbench.store import RunItem, Store
from ckptbench.suites.case import Case
from ckptbench.suites.ghostreview import LORA_MODELS_CSV, LORAS_CSV, PROMPTS_CSV, STYLES_CSV, case_id, read_table
from ckptbench.textfiles import closest

SCORE_COLUMNS = {"LAIONScore": "laion-aesthetic-v2", "ClipScore": "clip-cosine", "Rating": "kenjiqq-rating",
                 "Artifact": "kenjiqq-artifacts"}
STYLE_SCORER = "style-gram:ghostreview"
HIGHER_IS_BETTER = {"laion-aesthetic-v2": True, "clip-cosine": True, "kenjiqq-rating": True,
                    "kenjiqq-artifacts": False, STYLE_SCORER: False}
SUITES = {"quality": "ImageRatingDataFrame", "style": "ImageRatingDataFrameStyle", "lora": "ImageRatingDataFrameLoRA"}
_FILE_NAME = {"quality": re.compile(r"^(?P<checkpoint>.+)-(?P<case>\d+)\.csv$"),
              "style": re.compile(r"^(?P<checkpoint>.+)-Style-(?P<case>\d+)\.csv$"),
              "lora": re.compile(r"^(?P<checkpoint>.+)-LoRA-(?P<case>\d+)\.csv$")}
_PATTERN_HINT = {"quality": "<checkpoint>-<prompt>.csv", "style": "<checkpoint>-Style-<style>.csv",
                 "lora": "<checkpoint>-LoRA-<lora>.csv"}
_IMAGE_NAME = re.compile(r"^\d+-(?P<seed>\d+)-")


@dataclass
class GhostReviewResults:
    frame: pd.DataFrame  # checkpoint, suite, case_id, seed, scorer, value (NaN: no value in the release)
    cases: dict[tuple[str, str], Case]
    checkpoints: list[str]


def read_results(root: Path) -> GhostReviewResults:
    """Every per-image score of the release as a tidy table, with the cases they answer."""
    results = Path(root) / "dataresult"
    if not results.is_dir():
        raise DataImportError(f"{root}: no dataresult/ folder; give the folder of the GhostReview release that "
                              "holds dataresult/ and PromptsForReviews/.")
    parts = [_read_quality(results / SUITES["quality"])]
    for suite in ("style", "lora"):
        if (results / SUITES[suite]).is_dir():
            parts.append(_read_losses(results / SUITES[suite], suite))
    frame = pd.concat(parts, ignore_index=True)
    duplicated = frame.duplicated(["checkpoint", "suite", "case_id", "seed", "scorer"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise DataImportError(f"{root}: checkpoint '{row.checkpoint}', {row.suite} case {row.case_id}, seed "
                              f"{row.seed} appears twice; remove the duplicate file or rows.")
    checkpoints = list(dict.fromkeys(frame.sort_values("checkpoint", kind="stable")["checkpoint"]))
    return GhostReviewResults(frame, _cases(Path(root), frame), checkpoints)


def _files(folder: Path, suite: str) -> list[tuple[Path, str, str]]:
    found = []
    for path in sorted(folder.glob("*.csv")):
        match = _FILE_NAME[suite].match(path.name)
        if match is None:
            raise DataImportError(f"{path}: file name is not {_PATTERN_HINT[suite]}; rename or remove it.")
        found.append((path, match["checkpoint"], case_id(int(match["case"]))))
    if not found:
        raise DataImportError(f"{folder}: no result CSVs; the GhostReview release has one per checkpoint and case.")
    return found


def _read_quality(folder: Path) -> pd.DataFrame:
    parts = []
    for path, checkpoint, case in _files(folder, "quality"):
        table = pd.read_csv(path)
        if "ImageIndex" not in table:
            raise DataImportError(f"{path}: no ImageIndex column (the seed); not a GhostReview result file.")
        if not any(column in table for column in SCORE_COLUMNS):
            raise DataImportError(f"{path}: none of the columns {', '.join(SCORE_COLUMNS)}; not a GhostReview "
                                  "result file.")
        seeds = table["ImageIndex"].astype(int).to_numpy()
        for column, scorer in SCORE_COLUMNS.items():
            values = table[column].to_numpy(dtype=np.float64) if column in table else np.full(len(table), np.nan)
            parts.append(pd.DataFrame({"checkpoint": checkpoint, "suite": "quality", "case_id": case, "seed": seeds,
                                       "scorer": scorer, "value": values}))
    return pd.concat(parts, ignore_index=True)


def _read_losses(folder: Path, suite: str) -> pd.DataFrame:
    parts = []
    image_column = "Image" if suite == "style" else "ImageIndex"
    for path, checkpoint, case in _files(folder, suite):
        table = pd.read_csv(path)
        if "StyleLoss" not in table or image_column not in table:
            raise DataImportError(f"{path}: columns StyleLoss and {image_column} expected; not a GhostReview "
                                  f"{suite} loss file.")
        seeds = table[image_column].astype(str).str.extract(_IMAGE_NAME)["seed"]
        if seeds.isna().any():
            bad = table[image_column][seeds.isna()].iloc[0]
            raise DataImportError(f"{path}: image name '{bad}' does not start with <index>-<seed>-.")
        # One row per (image, reference image): an image's loss is its mean over the references.
        per_image = table.assign(seed=seeds.astype(int)).groupby("seed", sort=True)["StyleLoss"].mean()
        parts.append(pd.DataFrame({"checkpoint": checkpoint, "suite": suite, "case_id": case,
                                   "seed": per_image.index.to_numpy(), "scorer": STYLE_SCORER,
                                   "value": per_image.to_numpy(dtype=np.float64)}))
    return pd.concat(parts, ignore_index=True)


def _cases(root: Path, frame: pd.DataFrame) -> dict[tuple[str, str], Case]:
    """Case metadata from PromptsForReviews/ (prompt text, style, LoRA, showcase checkpoint) when present."""
    tables: dict[str, dict[int, dict[str, str]]] = {}
    for suite, csv_name, columns in (("quality", PROMPTS_CSV, ("index", "Prompts")),
                                     ("style", STYLES_CSV, ("index", "Prompts", "Style")),
                                     ("lora", LORAS_CSV, ("index", "Prompts", "LoRA")),
                                     ("showcase", LORA_MODELS_CSV, ("index", "used_sd_model_checkpoint"))):
        try:
            tables[suite] = read_table(root, csv_name, columns)
        except SuiteError:
            tables[suite] = {}
    cases = {}
    for suite, case in frame[["suite", "case_id"]].drop_duplicates().itertuples(index=False):
        row = tables.get(suite, {}).get(int(case), {})
        prompt = row.get("Prompts", "")
        if suite == "style":
            cases[(suite, case)] = Case(suite, case, prompt, kind="style", style=row.get("Style"),
                                        label=row.get("Style"))
        elif suite == "lora":
            model = tables["showcase"].get(int(case), {}).get("used_sd_model_checkpoint", "").strip()
            cases[(suite, case)] = Case(suite, case, prompt, kind="lora", label=Path(row.get("LoRA", case)).stem,
                                        showcase_models=(model,) if model else ())
        else:
            cases[(suite, case)] = Case(suite, case, prompt, kind="quality")
    return cases


def import_results(store: Store, root: Path, *, name: str = "GhostReview (imported)", baseline: str | None = None,
                   bootstrap: int = 1000, analysis_seed: int = 0, rank_by: str | None = None) -> int:
    """Write the release's results into ``store`` as a new run; return its id. ``rank_by`` (a scorer or
    "composite") is recorded as the run's ``[analysis] rank_by``."""
    data = read_results(root)
    if baseline is not None and baseline not in data.checkpoints:
        raise DataImportError(f"--baseline '{baseline}' is not one of the imported checkpoints: "
                              + ", ".join(data.checkpoints) + ".")
    scorers = [s for s in HIGHER_IS_BETTER if s in set(data.frame["scorer"])]
    if rank_by is not None and rank_by not in [*scorers, "composite"]:
        hint = closest(rank_by, [*scorers, "composite"])
        raise DataImportError(f"--rank-by '{rank_by}' is not a scorer of the release"
                              + (f" (did you mean '{hint}'?)" if hint else "") + "; give one of: "
                              + ", ".join([*scorers, "composite"]) + ".")
    spec: dict[str, Any] = {
        "benchmark": {"name": name, "preset": "ghostreview", "bootstrap": bootstrap, "analysis_seed": analysis_seed},
        "analysis": {"baseline": baseline, "rank_by": rank_by},
        "import": {"format": "ghostreview", "source": str(Path(root).resolve())},
        # As in a spec: the scorers in reading order, the first one (LAIONScore) leads the report.
        "scorers": {"use": scorers},
    }
    provenance = {"imported": "ghostreview", "source": str(Path(root).resolve()), "rows": len(data.frame)}
    run_id = store.start_run(spec, provenance)
    frame = data.frame.sort_values(["suite", "checkpoint", "case_id", "seed", "scorer"], kind="stable")
    cells = frame.drop_duplicates(["checkpoint", "suite", "case_id", "seed"])
    items = []
    item_of: dict[tuple[str, str, str, int], int] = {}
    for index, row in enumerate(cells.itertuples(index=False)):
        key = content_key({"import": "ghostreview", "checkpoint": row.checkpoint, "suite": row.suite,
                           "case": row.case_id, "seed": int(row.seed)})
        prompt = data.cases[(row.suite, row.case_id)].prompt
        items.append(RunItem(row.checkpoint, row.suite, row.case_id, prompt, int(row.seed), key))
        item_of[(row.checkpoint, row.suite, row.case_id, int(row.seed))] = index
    for checkpoint in data.checkpoints:
        store.put_run_checkpoint(run_id, checkpoint, f"ghostreview:{checkpoint}", None, "ok", None)
    store.put_run_items(run_id, items)
    store.put_run_cases(run_id, [(suite, case, meta.metadata()) for (suite, case), meta in data.cases.items()])
    for scorer, rows in frame.groupby("scorer", sort=True):
        scorer_key = content_key({"import": "ghostreview", "scorer": scorer})
        store.put_scorer(scorer_key, str(scorer), _scorer_info(str(scorer), scorer_key))
        indices = [item_of[(r.checkpoint, r.suite, r.case_id, int(r.seed))] for r in rows.itertuples(index=False)]
        store.put_run_scores(run_id, [(i, str(scorer), scorer_key, "") for i in indices])
        finite = rows["value"].notna().to_numpy()
        store.put_scores(scorer_key, [(items[i].image_key, "", float(v)) for i, v, ok in
                                      zip(indices, rows["value"], finite, strict=True) if ok])
    store.finish_run(run_id, "ok", {**provenance, "imported_at": time.time()})
    return run_id


def _scorer_info(scorer: str, key: str) -> dict[str, Any]:
    column = next((c for c, s in SCORE_COLUMNS.items() if s == scorer), "StyleLoss")
    return {
        "id": scorer, "version": "imported:ghostreview", "backbone": None, "weights_sha256": None,
        "higher_is_better": HIGHER_IS_BETTER[scorer],
        "scale": "unnormalised Gram loss (order 1e9)" if scorer == STYLE_SCORER else None,
        "preprocessing": None, "dtype": None, "needs_prompt": scorer == "clip-cosine",
        "description": f"GhostReview's '{column}' values, imported from its per-image result CSVs",
        "weights": {}, "key": key,
    }
