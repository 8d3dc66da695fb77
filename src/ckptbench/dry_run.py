"""``ckptbench run --dry-run``: what a run would generate and score, and how long that took before.

The plan is made exactly as a run makes it (same keys), then compared with the store: images, scores,
set scores and backbone forward passes already there versus new. No model is loaded and no run is
written (file digests are cached in the store as a run would cache them, which changes nothing a run
does). The estimate applies the throughput that earlier runs recorded, per device, to the new work.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ckptbench.executors import Executor, open_executor
from ckptbench.generate.batching import largest_size
from ckptbench.metrics.base import SetScorer
from ckptbench.metrics.engine import PreparedScorer, ScoreCell, rows_for
from ckptbench.metrics.set_engine import group_cells, set_key
from ckptbench.models.families import get_family
from ckptbench.models.memory import MemoryEstimate, describe, estimate_memory
from ckptbench.plan import (
    ImagePlan,
    embedding_near_misses,
    generation_plan,
    images_todo,
    plan_images,
    prepare_run,
    work_units,
)
from ckptbench.spec import BenchmarkSpec, ExecutorName
from ckptbench.store import Store
from ckptbench.suites.load import checked_suites
from ckptbench.throughput import Estimate, Need, estimate


@dataclass
class CheckpointWork:
    name: str
    cached: int
    new: int
    error: str | None = None  # the checkpoint cannot be used


@dataclass
class ScorerWork:
    name: str
    level: str  # "image" or "set"
    cached: int
    new: int
    skipped: int = 0  # cells it cannot score (no prompt, no reference images)
    skip_reasons: dict[str, int] = field(default_factory=dict)  # reason → cells


@dataclass
class DryRun:
    executor: str
    workers: int
    device: str
    dtype: str
    checkpoints: list[CheckpointWork] = field(default_factory=list)
    scorers: list[ScorerWork] = field(default_factory=list)
    forward_images: dict[str, int] = field(default_factory=dict)  # backbone → images to put through it
    skipped_cases: list[str] = field(default_factory=list)
    image_problems: list[str] = field(default_factory=list)  # images a checkpoint's family cannot make, and why
    notes: list[str] = field(default_factory=list)  # warnings a run would record (embedding near misses)
    retries: int = 0  # images to generate that failed in an earlier run
    not_retried: int = 0  # earlier failures left out (--skip-failed)
    needs: list[Need] = field(default_factory=list)
    estimates: list[Estimate] = field(default_factory=list)
    memory: list[MemoryEstimate] = field(default_factory=list)  # per checkpoint, before anything loads

    @property
    def images_new(self) -> int:
        return sum(c.new for c in self.checkpoints)

    @property
    def scores_new(self) -> int:
        return sum(s.new for s in self.scorers)


def dry_run(spec: BenchmarkSpec, store_root: Path | None = None, console: Console | None = None, *,
            executor: ExecutorName | None = None, ray_address: str | None = None, retry_failed: bool = True
            ) -> DryRun:
    console = console or Console(stderr=True)
    suites = checked_suites(spec)
    store = Store(store_root or spec.store_path)
    work = open_executor(spec, executor, ray_address)
    try:
        return _plan(spec, suites, store, work, console, retry_failed)
    finally:
        work.close()
        store.close()


def _plan(spec: BenchmarkSpec, suites: list, store: Store, work: Executor, console: Console, retry_failed: bool
          ) -> DryRun:
    setup = prepare_run(spec, suites, store, work)
    device, dtype, prepared, embeddings = setup.device, setup.dtype, setup.prepared, setup.embeddings
    plan = plan_images(spec, suites, store, dtype, embeddings, console)
    references = plan.references
    result = DryRun(work.name, work.workers(), str(device), dtype,
                    skipped_cases=[skipped.message for skipped in plan.skipped_cases])
    planned = {job.key for jobs in plan.jobs.values() for job in jobs}
    latest = store.latest_run()
    next_run = int(latest["run_id"]) + 1 if latest else 1
    failed_before = set(store.earlier_image_failures(next_run, planned - store.existing_images(planned)))
    result.notes = [message for _, _, message in embedding_near_misses(embeddings, plan.jobs)]
    existing, todo = images_todo(store, plan.jobs, spec.generation.batch_size,
                                 set() if retry_failed else failed_before)
    new_keys = {job.key for jobs in todo.values() for job in jobs} - existing
    result.retries = len(new_keys & failed_before)
    result.not_retried = len(failed_before - new_keys)
    for checkpoint, message in plan.unresolved:
        result.checkpoints.append(CheckpointWork(checkpoint.name, 0, 0, message))
    result.image_problems = _image_problems(plan)
    for name, jobs in plan.jobs.items():
        result.checkpoints.append(CheckpointWork(name, len({j.key for j in jobs} & existing),
                                                  len({j.key for j in todo[name]} - existing)))
        if jobs:
            batch = spec.generation.batch_size if isinstance(spec.generation.batch_size, int) else 1
            result.memory.append(estimate_memory(plan.resolved[name], dtype, *largest_size(jobs), batch,
                                                 str(device)))
    tasks = generation_plan(spec, work.workers(), plan.resolved, todo, embeddings)
    per_workload: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    for task in tasks:
        sums = per_workload[task.checkpoint.family]
        sums[0] += sum(work_units(job.settings) for job in task.jobs)
        sums[1] += 1
    result.needs = [Need("generate", family, spec.generation.dtype, units, int(count))
                    for family, (units, count) in per_workload.items()]
    cells = [ScoreCell(item=index, checkpoint=item.checkpoint, suite=item.suite, image_key=item.image_key,
                       image_path=store.image_file(item.image_key), prompt=item.prompt,
                       references=references.get((item.suite, item.case_id)))
             for index, item in enumerate(plan.items)]
    _count_scores(spec, store, prepared, cells, result)
    result.estimates = estimate(result.needs, store.throughput())
    return result


def _image_problems(plan: ImagePlan) -> list[str]:
    """Per checkpoint and reason, the planned images its family would refuse (``ModelFamily.job_problem``):
    the run fails exactly these images, so a dry run and ``validate`` say so before any weights load."""
    problems = []
    for name, jobs in plan.jobs.items():
        family = get_family(plan.resolved[name].family)
        unique = {job.key: job for job in jobs}.values()
        reasons = Counter(problem for job in unique if (problem := family.job_problem(job)))
        total = len(unique)
        problems += [f"checkpoint '{name}': {count} of {total} image(s) would fail: {reason}"
                     for reason, count in reasons.items()]
    return problems


def _count_scores(spec: BenchmarkSpec, store: Store, prepared: list[PreparedScorer], cells: list[ScoreCell],
                  result: DryRun) -> None:
    """Scores cached and new per scorer (counted as a run counts them), and images each backbone must see."""
    forward: dict[str, set[str]] = defaultdict(set)
    backbone_of: dict[str, PreparedScorer] = {}
    groups = group_cells(cells).values()
    for entry in prepared:
        if isinstance(entry.scorer, SetScorer):
            assert entry.references is not None
            sets = {set_key(members, entry.references.key): members for members in groups}
            have = store.existing_set_scores(entry.info.key, list(sets))
            result.scorers.append(ScorerWork(entry.name, "set", len(have), len(sets) - len(have)))
            new_keys = {cell.image_key for key, members in sets.items() if key not in have for cell in members}
        else:
            rows, skipped = rows_for(entry, cells)
            pairs = [(row.cell.image_key, row.context) for row in rows]
            have = store.existing_scores(entry.info.key, pairs)
            new_pairs = set(pairs) - have
            result.scorers.append(ScorerWork(entry.name, "image", sum(p in have for p in pairs), len(new_pairs),
                                             sum(skipped.values()), dict(skipped)))
            new_keys = {image for image, _ in new_pairs}
        backbone = entry.backbone
        if backbone.cache_features:
            for feature in entry.scorer.features:
                new_keys -= store.existing_embeddings(f"{backbone.key}/{feature}", sorted(new_keys))
        forward[backbone.key] |= new_keys
        backbone_of.setdefault(backbone.key, entry)
    for key, images in forward.items():
        entry = backbone_of[key]
        result.forward_images[f"{entry.backbone.id} {entry.backbone.dtype}"] = len(images)
        if images:
            dtype = spec.scorers.options_for(entry.name).dtype
            result.needs.append(Need("score", entry.backbone.id, dtype, len(images), 1))


def render(result: DryRun, out: Console) -> None:
    images = Table(title="images", title_justify="left")
    for column in ("checkpoint", "in store", "to generate", "note"):
        images.add_column(column, justify="right" if column in ("in store", "to generate") else "left")
    for work in result.checkpoints:
        images.add_row(work.name, str(work.cached), str(work.new), work.error or "")
    out.print(images)
    scores = Table(title="scores", title_justify="left")
    for column in ("scorer", "level", "in store", "to compute", "cannot score"):
        scores.add_column(column, justify="left" if column in ("scorer", "level") else "right")
    for work in result.scorers:
        scores.add_row(work.name, work.level, str(work.cached), str(work.new), str(work.skipped or ""))
    out.print(scores)
    for memory in result.memory:
        style = "red" if memory.fits is False else "default"
        out.print(f"[{style}]memory[/]: {escape(describe(memory, result.device))}", highlight=False)
    for backbone, count in result.forward_images.items():
        out.print(f"backbone {backbone}: {count} images to embed", highlight=False)
    for message in result.skipped_cases:
        out.print(f"[yellow]skipped[/]: {escape(message)}", highlight=False)
    for message in result.image_problems:
        out.print(f"[red]would fail[/]: {escape(message)}", highlight=False)
    for message in result.notes:
        out.print(f"[yellow]note[/]: {escape(message)}", highlight=False)
    out.print(f"executor {result.executor} ({result.workers} worker{'s' if result.workers > 1 else ''}), "
              f"device {result.device}, dtype {result.dtype}: {result.images_new} images to generate"
              + (f" ({result.retries} of them failed in an earlier run and are tried again; --skip-failed leaves "
                 "them out)" if result.retries else "")
              + (f", {result.not_retried} earlier failures left out (--skip-failed)" if result.not_retried else "")
              + f", {result.scores_new} scores to compute", highlight=False)
    if not result.images_new and not result.scores_new:
        out.print("nothing to do: everything is already in the store")
    elif not result.estimates:
        out.print("no estimate: no earlier run in this store recorded its throughput")
    for guess in result.estimates:
        wall = f", ≈ {_duration(guess.seconds / result.workers)} on {result.workers} workers" \
            if result.workers > 1 else ""
        missing = f" (not counted, never measured there: {', '.join(guess.missing)})" if guess.missing else ""
        out.print(f"estimate on {guess.device_kind} · {guess.device_name}: {_duration(guess.seconds)} of device "
                  f"time{wall}{missing}", highlight=False)
    out.print("dry run: nothing was generated, scored or recorded as a run")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"

