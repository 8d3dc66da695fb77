"""Set-level scoring: one number per (checkpoint, suite) set of images against a reference image set.

A set score is known by (scorer key, set key), the set key hashing the sorted image keys and the
reference set, so a re-run computes nothing and a set that gains an image is computed anew. Features
come through the same ``FeatureSource`` as per-image scoring (cached in the store per image and per
reference file), so a set scorer on a backbone the per-image scorers already ran costs no forward pass.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ckptbench.errors import SpecError
from ckptbench.hashing import content_key
from ckptbench.metrics.base import SetScorer
from ckptbench.metrics.engine import PreparedScorer, Progress, ScoreCell
from ckptbench.metrics.features import FeatureSource, ScoreStore
from ckptbench.stop import StopFlag, stop_requested
from ckptbench.store import Store


@dataclass(frozen=True)
class SetJob:
    scorer: str
    checkpoint: str
    suite: str
    cells: tuple[ScoreCell, ...]
    key: str


@dataclass
class SetPlan:
    todo: dict[str, list[SetJob]] = field(default_factory=dict)
    cached: int = 0

    @property
    def count(self) -> int:
        return sum(len(jobs) for jobs in self.todo.values())


@dataclass
class SetReport:
    scored: int = 0
    forward_images: int = 0
    load_seconds: float = 0.0
    failures: list[tuple[str, str, str, str]] = field(default_factory=list)  # (scorer, checkpoint, suite, message)


def set_key(cells: Sequence[ScoreCell], references_key: str) -> str:
    return content_key({"images": sorted({cell.image_key for cell in cells}), "references": references_key})


def group_cells(cells: Sequence[ScoreCell]) -> dict[tuple[str, str], list[ScoreCell]]:
    """The run's images per (checkpoint, suite): the sets a distribution scorer compares."""
    groups: dict[tuple[str, str], list[ScoreCell]] = defaultdict(list)
    for cell in cells:
        groups[(cell.checkpoint, cell.suite)].append(cell)
    return dict(groups)


def check_planned_sizes(prepared: Sequence[PreparedScorer], set_sizes: dict[str, int]) -> None:
    """Refuse, before any image is made, a set scorer whose planned sets are too small (suite → images)."""
    for entry in prepared:
        if not isinstance(entry.scorer, SetScorer) or entry.references is None:
            continue
        for suite, size in set_sizes.items():
            refused = entry.scorer.check_sizes(size, len(entry.references))
            if refused:
                raise SpecError(f"{refused} — suite '{suite}' gives each checkpoint {size} images; remove "
                                f"'{entry.name}' from [scorers] use or plan more images.")


def plan_sets(store: Store, run_id: int | None, prepared: Sequence[PreparedScorer], cells: Sequence[ScoreCell]
              ) -> SetPlan:
    plan = SetPlan()
    groups = group_cells(cells)
    for entry in prepared:
        if entry.scorer.level != "set":
            continue
        assert entry.references is not None
        jobs = [SetJob(entry.name, checkpoint, suite, tuple(members), set_key(members, entry.references.key))
                for (checkpoint, suite), members in groups.items()]
        if run_id is not None:
            store.put_run_sets(run_id, [(job.checkpoint, job.suite, entry.name, entry.info.key, job.key)
                                        for job in jobs])
        existing = store.existing_set_scores(entry.info.key, [job.key for job in jobs])
        plan.cached += sum(job.key in existing for job in jobs)
        plan.todo[entry.name] = [job for job in jobs if job.key not in existing]
    return plan


def execute_sets(store: ScoreStore, prepared: Sequence[PreparedScorer], plan: SetPlan, device: torch.device,
                 advance: Progress | None = None, stop: StopFlag | None = None) -> SetReport:
    report = SetReport()
    for entry in prepared:
        jobs = plan.todo.get(entry.name)
        if not jobs:
            continue
        scorer = entry.scorer
        assert isinstance(scorer, SetScorer) and entry.references is not None
        (feature,) = scorer.features
        jobs = _refuse_small_sets(entry, scorer, jobs, report)
        if not jobs:
            continue
        source = FeatureSource(store, entry.backbone, device, {feature}, scorer.options.batch_size)
        try:
            if not _score_jobs(store, source, entry, scorer, jobs, feature, report, advance, stop):
                return report
        finally:
            source.close()
            report.forward_images += source.forward_images
            report.load_seconds += source.load_seconds
    return report


def _score_jobs(store: ScoreStore, source: FeatureSource, entry: PreparedScorer, scorer: SetScorer,
                jobs: list[SetJob], feature: str, report: SetReport, advance: Progress | None,
                stop: StopFlag | None) -> bool:
    """One set scorer's sets; False when ``stop`` ended the work early."""
    assert entry.references is not None
    try:
        references = source.references(entry.references)[feature]
    except Exception as error:
        report.failures.extend((entry.name, job.checkpoint, job.suite, f"reference images: {error}") for job in jobs)
        return True
    for done, job in enumerate(jobs, start=1):
        if stop_requested(stop):  # between sets: a set once started is finished
            return False
        _score_job(store, source, entry, scorer, job, references, feature, report)
        if advance:
            advance(f"scoring sets: {entry.name}", done, len(jobs))
    return True


def _refuse_small_sets(entry: PreparedScorer, scorer: SetScorer, jobs: list[SetJob], report: SetReport
                      ) -> list[SetJob]:
    """Record the sets too small for the scorer (before any feature is computed); return the others."""
    assert entry.references is not None
    kept = []
    for job in jobs:
        refused = scorer.check_sizes(len({cell.image_key for cell in job.cells}), len(entry.references))
        if refused:
            report.failures.append((entry.name, job.checkpoint, job.suite, refused))
        else:
            kept.append(job)
    return kept


def _score_job(store: ScoreStore, source: FeatureSource, entry: PreparedScorer, scorer: SetScorer, job: SetJob,
               references: np.ndarray, feature: str, report: SetReport) -> None:
    paths = {cell.image_key: cell.image_path for cell in job.cells}
    problems: list[str] = []
    try:
        features = source.images(list(paths), paths, lambda _key, message: problems.append(message))
    except Exception as error:  # a backbone that cannot load fails this scorer only
        report.failures.append((entry.name, job.checkpoint, job.suite, f"{type(error).__name__}: {error}"))
        return
    if problems:
        report.failures.append((entry.name, job.checkpoint, job.suite, problems[0]))
        return
    try:
        value = scorer.score_set(np.stack([features[key][feature] for key in paths]), references)
    except Exception as error:
        report.failures.append((entry.name, job.checkpoint, job.suite, f"{type(error).__name__}: {error}"))
        return
    if not np.isfinite(value):
        report.failures.append((entry.name, job.checkpoint, job.suite, f"non-finite value ({value})"))
        return
    store.put_set_score(entry.info.key, job.key, float(value), len(features), len(references))
    report.scored += 1
