"""Scoring away from the store: what a worker needs is packed by the driver, what it writes comes back.

The driver packs, for one scoring task, the part of the store the task reads (cached image and reference
features, reference summaries) and the bytes of every image or reference file whose features are not
cached (workers need not see the driver's disk). The worker writes those files to a temporary folder,
scores against a ``StoreSnapshot`` and returns the snapshot's recorded writes, which the driver replays
onto the store with the same ``Store`` methods the local executor calls directly.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ckptbench.metrics.engine import PreparedScorer, Row, ScoreCell, ScoringPlan
from ckptbench.metrics.features import reference_image_key
from ckptbench.metrics.references import ReferenceSet
from ckptbench.metrics.set_engine import SetJob, SetPlan
from ckptbench.store import Store


@dataclass
class StoreSnapshot:
    """A ``ScoreStore`` made of what the driver read for one task; its writes are recorded for the driver."""

    vectors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # feature key → image key → vector
    summaries: dict[tuple[str, str], dict[str, np.ndarray]] = field(default_factory=dict)
    writes: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)  # (Store method, arguments)
    _scored: dict[str, set[tuple[str, str]]] = field(default_factory=dict)

    def embeddings(self, backbone_key: str, image_keys: Sequence[str]) -> dict[str, np.ndarray]:
        known = self.vectors.get(backbone_key, {})
        return {key: known[key] for key in image_keys if key in known}

    def put_embeddings(self, backbone_key: str, vectors: dict[str, np.ndarray]) -> None:
        self.vectors.setdefault(backbone_key, {}).update(vectors)
        self.writes.append(("put_embeddings", (backbone_key, vectors)))

    def reference_summary(self, set_key: str, scorer_key: str) -> dict[str, np.ndarray] | None:
        return self.summaries.get((set_key, scorer_key))

    def put_reference_summary(self, set_key: str, scorer_key: str, arrays: dict[str, np.ndarray]) -> None:
        self.summaries[(set_key, scorer_key)] = arrays
        self.writes.append(("put_reference_summary", (set_key, scorer_key, arrays)))

    def existing_scores(self, scorer_key: str, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        # The task was given only scores missing from the store: those it has are the ones it wrote.
        return self._scored.get(scorer_key, set()) & set(pairs)

    def put_scores(self, scorer_key: str, rows: Sequence[tuple[str, str, float]]) -> None:
        self._scored.setdefault(scorer_key, set()).update((image, context) for image, context, _ in rows)
        self.writes.append(("put_scores", (scorer_key, list(rows))))

    def put_set_score(self, scorer_key: str, set_key: str, value: float, images: int, references: int) -> None:
        self.writes.append(("put_set_score", (scorer_key, set_key, value, images, references)))

    @contextmanager
    def transaction(self) -> Iterator[StoreSnapshot]:
        # Nothing to commit here: the driver replays all of a task's writes in one store transaction.
        yield self


def replay_writes(store: Store, writes: Sequence[tuple[str, tuple[Any, ...]]]) -> None:
    with store.transaction():
        for method, arguments in writes:
            getattr(store, method)(*arguments)


@dataclass
class ScoringPayload:
    """One scoring task: per-image scorers of one backbone (``plan``) or one set scorer (``set_plan``)."""

    entries: list[PreparedScorer]
    plan: ScoringPlan | None
    set_plan: SetPlan | None
    snapshot: StoreSnapshot
    files: dict[str, bytes]  # path on the driver → content, for the files whose features are not cached


def _references_of(entries: Sequence[PreparedScorer], rows: Sequence[Row]) -> list[ReferenceSet]:
    sets = {row.references.key: row.references for row in rows if row.references is not None}
    sets.update({entry.references.key: entry.references for entry in entries if entry.references is not None})
    return list(sets.values())


def pack(store: Store, entries: list[PreparedScorer], plan: ScoringPlan | None, set_plan: SetPlan | None
         ) -> ScoringPayload:
    """Read from the store what one task needs (driver side)."""
    rows = [row for entry in entries for row in (plan.todo.get(entry.name, []) if plan else [])]
    cells: dict[str, Path] = {row.cell.image_key: row.cell.image_path for row in rows}
    if set_plan is not None:
        cells.update({cell.image_key: cell.image_path for entry in entries
                      for job in set_plan.todo.get(entry.name, []) for cell in job.cells})
    references = _references_of(entries, rows)
    files_by_key = dict(cells)
    for reference in references:
        files_by_key.update(zip((reference_image_key(d) for d in reference.digests), reference.files, strict=True))
    spec = entries[0].backbone
    wanted = {name for entry in entries for name in entry.scorer.features}
    snapshot = StoreSnapshot()
    cached: set[str] = set(files_by_key) if spec.cache_features else set()
    for name in sorted(wanted) if spec.cache_features else []:
        vectors = store.embeddings(f"{spec.key}/{name}", list(files_by_key))
        snapshot.vectors[f"{spec.key}/{name}"] = vectors
        cached &= set(vectors)
    for entry in entries:
        for reference in references:
            summary = store.reference_summary(reference.key, entry.info.key)
            if summary is not None:
                snapshot.summaries[(reference.key, entry.info.key)] = summary
    files = {str(path): Path(path).read_bytes() for key, path in files_by_key.items() if key not in cached}
    sub_plan = None if plan is None else dataclasses.replace(plan, todo={e.name: plan.todo[e.name] for e in entries
                                                                         if e.name in plan.todo})
    sub_sets = None if set_plan is None else SetPlan(todo={e.name: set_plan.todo[e.name] for e in entries
                                                           if e.name in set_plan.todo})
    return ScoringPayload(entries, sub_plan, sub_sets, snapshot, files)


class Unpacked:
    """The payload with its files written to a temporary folder and every path pointing there (worker side)."""

    def __init__(self, payload: ScoringPayload) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="ckptbench-score-")
        root = Path(self._folder.name)
        self._paths: dict[str, Path] = {}
        for index, (original, content) in enumerate(payload.files.items()):
            local = root / f"{index}{Path(original).suffix}"
            local.write_bytes(content)
            self._paths[original] = local
        self.entries = [dataclasses.replace(entry, references=self._references(entry.references))
                        for entry in payload.entries]
        self.plan = None if payload.plan is None else dataclasses.replace(
            payload.plan, todo={name: [self._row(row) for row in rows] for name, rows in payload.plan.todo.items()})
        self.set_plan = None if payload.set_plan is None else SetPlan(
            todo={name: [self._set_job(job) for job in jobs] for name, jobs in payload.set_plan.todo.items()})

    def _path(self, path: Path) -> Path:
        return self._paths.get(str(path), path)

    def _references(self, references: ReferenceSet | None) -> ReferenceSet | None:
        if references is None:
            return None
        return ReferenceSet(tuple(self._path(p) for p in references.files), references.digests)

    def _cell(self, cell: ScoreCell) -> ScoreCell:
        return dataclasses.replace(cell, image_path=self._path(cell.image_path),
                                   references=self._references(cell.references))

    def _row(self, row: Row) -> Row:
        return dataclasses.replace(row, cell=self._cell(row.cell), references=self._references(row.references))

    def _set_job(self, job: SetJob) -> SetJob:
        return dataclasses.replace(job, cells=tuple(self._cell(cell) for cell in job.cells))

    def close(self) -> None:
        self._folder.cleanup()
