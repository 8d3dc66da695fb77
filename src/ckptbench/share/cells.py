"""A run's images as cells with named factors, for grids and exports.

Each cell is one planned image of the run: its checkpoint, case (suite, id, label, prompt), seed, sweep
variant, the PNG in the store (None when the image failed), every per-image score and the failure
message when there is one. Factors name what a cell can be laid out by: ``checkpoint``, ``seed``,
``prompt`` (the case) and every sweep axis of the run (``cfg``, ``steps``, …).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ckptbench.errors import CkptbenchError, StoreError
from ckptbench.spec_errors import did_you_mean
from ckptbench.store import Store
from ckptbench.sweep import SweepAxis, recorded_axes, variants

BASE_FACTORS = ("prompt", "checkpoint", "seed")


@dataclass(frozen=True)
class Cell:
    checkpoint: str
    suite: str
    case_id: str
    label: str  # the case's short name (a style, a LoRA) or its id
    prompt: str  # as the image was made (a prompt S/R variant's own prompt)
    seed: int
    variant: str  # the sweep variant's id ("" without a sweep)
    image_key: str
    image: Path | None  # the PNG in the store; None when the image failed
    scores: dict[str, float | None] = field(default_factory=dict)
    failure: str | None = None  # why there is no image (or no score)
    axis_labels: dict[str, str] = field(default_factory=dict)  # sweep axis → this cell's value label

    def factor(self, name: str) -> str:
        """The cell's value of a factor, as grids and file names show it."""
        if name == "checkpoint":
            return self.checkpoint
        if name == "seed":
            return str(self.seed)
        if name == "prompt":
            return f"{self.suite}/{self.case_id}"
        return self.axis_labels[name]


@dataclass(frozen=True)
class RunCells:
    run_id: int
    store: Path
    cells: list[Cell]
    scorers: list[str]  # per-image scorers, in the order the run lists them
    axes: tuple[SweepAxis, ...]
    checkpoints: list[str]  # in run order

    @property
    def factors(self) -> tuple[str, ...]:
        return (*BASE_FACTORS, *(axis.name for axis in self.axes))

    def values(self, factor: str, cells: Sequence[Cell] | None = None) -> list[str]:
        """A factor's values in their natural order: checkpoints as run, seeds ascending, cases as planned,
        axis values as the spec lists them."""
        present = {cell.factor(factor) for cell in (self.cells if cells is None else cells)}
        if factor == "checkpoint":
            ordered = self.checkpoints
        elif factor == "seed":
            ordered = [str(seed) for seed in sorted({int(value) for value in present})]
        elif factor == "prompt":
            ordered = list(dict.fromkeys(cell.factor("prompt") for cell in self.cells))
        else:
            ordered = next(axis.labels for axis in self.axes if axis.name == factor)
        return [value for value in ordered if value in present]


def load_cells(store: Store, run_id: int | None = None) -> RunCells:
    """Every planned image of a run (default: the latest) with its scores, labels and failures."""
    run = store.run(run_id) if run_id is not None else store.latest_run()
    if run is None:
        raise StoreError(f"{store.root}: no run recorded in this store"
                         + (f" with id {run_id}" if run_id is not None else "") + "; run `ckptbench run SPEC` first.")
    run_id = int(run["run_id"])
    items = store.run_items(run_id)
    frame = store.frame(run_id)
    axes = recorded_axes(run["spec"])
    labels_of = {variant.id: variant.labels() for variant in variants(axes)}
    cases = store.run_cases(run_id)
    recorded = list(((run["spec"].get("scorers") or {}).get("use")) or [])
    present = set(frame["scorer"].astype(str))
    scorers = [name for name in recorded if name in present] + sorted(present - set(recorded))
    scores: dict[str, dict[str, float | None]] = {}
    for key, scorer, value in frame[["image_key", "scorer", "value"]].itertuples(index=False, name=None):
        scores.setdefault(str(key), {})[str(scorer)] = None if value != value else float(value)  # NaN → None
    failures: dict[str, str] = {}
    for failure in store.run_failures(run_id):
        if failure.get("image_key") and failure["scope"] in ("image", "score"):
            failures.setdefault(str(failure["image_key"]), str(failure["message"]))
    cells = []
    for row in items.itertuples():
        key = str(row.image_key)
        meta: dict[str, Any] = cases.get((str(row.suite), str(row.case_id)), {})
        image = store.root / str(row.image) if isinstance(row.image, str) else None
        cells.append(Cell(
            checkpoint=str(row.checkpoint), suite=str(row.suite), case_id=str(row.case_id),
            label=str(meta.get("label") or meta.get("style") or row.case_id), prompt=str(row.prompt),
            seed=int(row.seed), variant=str(row.variant or ""), image_key=key, image=image,
            scores=scores.get(key, {}), failure=failures.get(key) or (None if image else "no image"),
            axis_labels=labels_of.get(str(row.variant or ""), {})))
    checkpoints = [str(c["name"]) for c in store.run_checkpoints(run_id)]
    return RunCells(run_id, store.root, cells, scorers, axes,
                    checkpoints + [c.checkpoint for c in cells if c.checkpoint not in checkpoints])


def select(run: RunCells, only: dict[str, list[str]]) -> list[Cell]:
    """The cells whose factors take the given values (``{"seed": ["1", "2"], "checkpoint": ["a"]}``)."""
    for factor, wanted in only.items():
        if factor not in run.factors and factor != "suite":
            hint = did_you_mean(factor, ("suite", *run.factors))
            raise CkptbenchError(f"--only {factor}=…: this run has no factor '{factor}'{hint}; use one of "
                                 f"{', '.join(('suite', *run.factors))}.")
        known = {cell.suite for cell in run.cells} if factor == "suite" else set(run.values(factor))
        unknown = [value for value in wanted if value not in known]
        if unknown:
            raise CkptbenchError(f"--only {factor}={','.join(unknown)}: not in this run; its values are "
                                 f"{', '.join(sorted(known))}.")
    return [cell for cell in run.cells
            if all((cell.suite if factor == "suite" else cell.factor(factor)) in wanted
                   for factor, wanted in only.items())]

