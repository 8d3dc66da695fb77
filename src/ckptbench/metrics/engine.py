"""Scoring a run's images: scorers grouped by backbone, one forward pass per image per backbone.

Image features are cached in the store by (image key, backbone key, feature), so a head added later
costs no new forward pass; text embeddings are computed once per distinct text per run; a reference
set is summarised once per scorer and kept in the store. Set-level scorers live in ``set_engine``.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ckptbench.device import resolve_dtype_name
from ckptbench.errors import SpecError
from ckptbench.hashing import DigestCache, content_key
from ckptbench.metrics.backbones import resolve_backbone, token_counter
from ckptbench.metrics.base import BackboneSpec, FeatureBatch, ImageScorer, ScorerBase, ScorerInfo
from ckptbench.metrics.features import FeatureSource, ScoreStore
from ckptbench.metrics.references import ReferenceSet, reference_set
from ckptbench.metrics.registry import create_scorer
from ckptbench.spec import ScorersSpec
from ckptbench.stop import StopFlag, stop_requested
from ckptbench.store import Store

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ScoreCell:
    """One image of a run that the scorers must answer for."""

    item: int
    checkpoint: str
    suite: str
    image_key: str
    image_path: Path
    prompt: str
    references: ReferenceSet | None = None  # the case's own reference images (style, LoRA showcase)


@dataclass
class PreparedScorer:
    name: str
    scorer: ScorerBase
    backbone: BackboneSpec
    info: ScorerInfo
    references: ReferenceSet | None = None  # from the scorer's own ``references`` option


@dataclass(frozen=True)
class Row:
    cell: ScoreCell
    text: str
    context: str
    references: ReferenceSet | None


@dataclass
class ScoringPlan:
    todo: dict[str, list[Row]]  # image scorer → rows to compute
    cached: int = 0
    truncated: dict[str, dict[str, int]] = field(default_factory=dict)  # scorer → suite → prompts truncated
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)  # scorer → reason → cells it cannot score

    @property
    def count(self) -> int:
        return sum(len(rows) for rows in self.todo.values())


@dataclass
class ScoringReport:
    scored: int = 0
    forward_images: int = 0
    load_seconds: float = 0.0  # loading backbones and heads
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (scorer, image key, message)


def prepare_scorers(scorers: ScorersSpec, device: torch.device, cache: DigestCache | None) -> list[PreparedScorer]:
    """Resolve every scorer's weights and compute its identity, without loading any model."""
    prepared = []
    for name in scorers.use:
        options = scorers.options_for(name)
        scorer = create_scorer(name, options)
        dtype = resolve_dtype_name(options.dtype, device)
        backbone = resolve_backbone(scorer.backbone_request(), dtype, name, cache)
        references = None
        if options.references is not None:
            references = reference_set([Path(options.references)], cache, f"scorers.{name}.references")
        elif scorer.level == "set":
            raise SpecError(f"scorer '{name}' compares sets of images with reference images; set "
                            f'[scorers.{name}] references = "<folder of reference images>".')
        prepared.append(PreparedScorer(name, scorer, backbone, scorer.info(backbone), references))
    return prepared


def context_key(text: str) -> str:
    return content_key(text) if text else ""


def reference_context(references: ReferenceSet) -> str:
    return f"refs:{references.key}"


def rows_for(entry: PreparedScorer, cells: Sequence[ScoreCell]) -> tuple[list[Row], dict[str, int]]:
    scorer = entry.scorer
    assert isinstance(scorer, ImageScorer)
    rows: list[Row] = []
    skipped: dict[str, int] = defaultdict(int)
    # A prompt repeats over every checkpoint and seed: parse and hash each distinct one once.
    texts: dict[str, tuple[str, str]] = {}
    for cell in cells:
        if scorer.needs_references:
            references = cell.references or entry.references
            if references is None:
                skipped["no reference images"] += 1
                continue
            rows.append(Row(cell, "", reference_context(references), references))
        else:
            if cell.prompt not in texts:
                text = scorer.text_for(cell.prompt)
                texts[cell.prompt] = (text, context_key(text))
            text, context = texts[cell.prompt]
            if scorer.needs_prompt and not text:
                skipped["no prompt"] += 1
                continue
            rows.append(Row(cell, text, context, None))
    return rows, dict(skipped)


def plan_scoring(store: Store, run_id: int | None, prepared: Sequence[PreparedScorer], cells: Sequence[ScoreCell]
                 ) -> ScoringPlan:
    """Record which score answers each cell of the run, and find the ones not in the store yet."""
    plan = ScoringPlan(todo={})
    for entry in prepared:
        store.put_scorer(entry.info.key, entry.name, entry.info.as_dict())
        if entry.scorer.level != "image":
            continue
        rows, skipped = rows_for(entry, cells)
        if skipped:
            plan.skipped[entry.name] = skipped
        if run_id is not None:
            store.put_run_scores(run_id, [(row.cell.item, entry.name, entry.info.key, row.context) for row in rows])
        existing = store.existing_scores(entry.info.key, [(row.cell.image_key, row.context) for row in rows])
        seen: set[tuple[str, str]] = set()
        todo = []
        for row in rows:
            pair = (row.cell.image_key, row.context)
            if pair in existing or pair in seen:
                plan.cached += pair in existing
                continue
            seen.add(pair)
            todo.append(row)
        plan.todo[entry.name] = todo
        if entry.scorer.needs_prompt:
            plan.truncated[entry.name] = count_truncated(entry.backbone, rows)
    return plan


def count_truncated(backbone: BackboneSpec, rows: Sequence[Row]) -> dict[str, int]:
    """Distinct prompt texts per suite longer than the text encoder's context (they get truncated)."""
    counter = token_counter(backbone)
    if counter is None:
        return {}
    lengths: dict[str, int] = {}
    per_suite: dict[str, set[str]] = defaultdict(set)
    for row in rows:
        if row.text not in lengths:
            lengths[row.text] = counter(row.text)
        if lengths[row.text] > counter.context_length:
            per_suite[row.cell.suite].add(row.text)
    return {suite: len(texts) for suite, texts in sorted(per_suite.items())}


def execute_scoring(store: ScoreStore, prepared: Sequence[PreparedScorer], plan: ScoringPlan, device: torch.device,
                    advance: Progress | None = None, stop: StopFlag | None = None) -> ScoringReport:
    """Compute the planned scores, one backbone at a time; ``advance(label, done, total)`` reports progress;
    ``stop``, once set, ends the work after the chunk in progress."""
    report = ScoringReport()
    groups: dict[str, list[PreparedScorer]] = defaultdict(list)
    for entry in prepared:
        if plan.todo.get(entry.name):
            groups[entry.backbone.key].append(entry)
    for entries in groups.values():
        if stop_requested(stop):
            break
        try:
            _score_group(store, entries, plan, device, report, advance, stop)
        except Exception as error:  # a backbone or head that cannot load fails its own scorers only
            message = f"cannot score: {type(error).__name__}: {error}"
            stored = {entry.name: store.existing_scores(entry.info.key, [(row.cell.image_key, row.context)
                                                                         for row in plan.todo[entry.name]])
                      for entry in entries}
            report.failures.extend((entry.name, row.cell.image_key, message) for entry in entries
                                   for row in plan.todo[entry.name]
                                   if (row.cell.image_key, row.context) not in stored[entry.name])
    return report


def _score_group(store: ScoreStore, entries: list[PreparedScorer], plan: ScoringPlan, device: torch.device,
                 report: ScoringReport, advance: Progress | None, stop: StopFlag | None) -> None:
    wanted = {name for entry in entries for name in entry.scorer.features}
    batch_size = min(entry.scorer.options.batch_size for entry in entries)
    source = FeatureSource(store, entries[0].backbone, device, wanted, batch_size)
    started = time.perf_counter()
    for entry in entries:
        entry.scorer.load(device)
    report.load_seconds += time.perf_counter() - started
    paths: dict[str, Path] = {}
    for entry in entries:
        for row in plan.todo[entry.name]:
            paths[row.cell.image_key] = row.cell.image_path
    image_keys = list(paths)
    summaries: dict[tuple[str, str], dict[str, np.ndarray]] = {}
    label = f"scoring: {', '.join(e.name for e in entries)}"
    rows_by_key: dict[str, dict[str, list[Row]]] = {entry.name: defaultdict(list) for entry in entries}
    for entry in entries:
        for row in plan.todo[entry.name]:
            rows_by_key[entry.name][row.cell.image_key].append(row)

    def on_failure(key: str, message: str) -> None:
        report.failures.extend((entry.name, key, message) for entry in entries)

    chunks = [image_keys[start : start + batch_size] for start in range(0, len(image_keys), batch_size)]
    source.schedule(chunks, paths)  # images are read and preprocessed ahead while the backbone works
    try:
        for done, chunk in enumerate(chunks, start=1):
            if stop_requested(stop):
                return
            # A chunk's features and all its scores are stored together or not at all: after a kill, the next
            # run redoes whole chunks, which come out exactly as in an uninterrupted run (batched kernels round
            # differently for different batch contents).
            with store.transaction():
                features = source.images(chunk, paths, on_failure)
                for entry in entries:
                    rows = [row for key in chunk if key in features for row in rows_by_key[entry.name].get(key, [])]
                    if rows:
                        _score_rows(store, source, entry, rows, features, summaries, report)
            if advance:
                advance(label, min(done * batch_size, len(image_keys)), len(image_keys))
    finally:
        source.close()
        report.forward_images += source.forward_images
        report.load_seconds += source.load_seconds


def _reference_summary(store: ScoreStore, source: FeatureSource, entry: PreparedScorer, references: ReferenceSet,
                       summaries: dict[tuple[str, str], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """A reference set's summary for one scorer: from memory, the store, or computed once."""
    cache_key = (entry.info.key, references.key)
    if cache_key not in summaries:
        summary = store.reference_summary(references.key, entry.info.key)
        if summary is None:
            scorer = entry.scorer
            assert isinstance(scorer, ImageScorer)
            summary = scorer.summarize_references(source.references(references), source.meta)
            store.put_reference_summary(references.key, entry.info.key, summary)
        summaries[cache_key] = summary
    return summaries[cache_key]


def _rows_with_references(store: ScoreStore, source: FeatureSource, entry: PreparedScorer, rows: list[Row],
                          summaries: dict[tuple[str, str], dict[str, np.ndarray]], report: ScoringReport
                          ) -> tuple[list[Row], list[dict[str, np.ndarray]]]:
    """The rows whose reference set could be summarised, with their summaries; a set that cannot (an image
    made unreadable after the run checked it) fails its own rows only, not the other cases of the chunk."""
    kept: list[Row] = []
    references: list[dict[str, np.ndarray]] = []
    for row in rows:
        assert row.references is not None  # rows_for gives every row of a reference scorer its set
        try:
            references.append(_reference_summary(store, source, entry, row.references, summaries))
        except Exception as error:
            report.failures.append((entry.name, row.cell.image_key, f"scorer '{entry.name}': {error}"))
            continue
        kept.append(row)
    return kept, references


def _rows_with_images(entry: PreparedScorer, rows: list[Row], report: ScoringReport
                      ) -> tuple[list[Row], list[Image.Image]]:
    """The rows whose image can be decoded, with the RGB images (joint scorers); the others fail alone."""
    kept: list[Row] = []
    images: list[Image.Image] = []
    for row in rows:
        try:
            with Image.open(row.cell.image_path) as image:
                images.append(image.convert("RGB"))
        except Exception as error:
            report.failures.append((entry.name, row.cell.image_key, f"cannot read image {row.cell.image_path}: "
                                                                     f"{error}"))
            continue
        kept.append(row)
    return kept, images


def _score_rows(store: ScoreStore, source: FeatureSource, entry: PreparedScorer, rows: list[Row],
                features: dict[str, dict[str, np.ndarray]], summaries: dict[tuple[str, str], dict[str, np.ndarray]],
                report: ScoringReport) -> None:
    scorer = entry.scorer
    assert isinstance(scorer, ImageScorer)
    references = None
    images = None
    if scorer.needs_references:
        rows, references = _rows_with_references(store, source, entry, rows, summaries, report)
    if scorer.joint:
        rows, images = _rows_with_images(entry, rows, report)
        source.forward_images += len(images)  # the model runs on every image (with its prompt) in ``score``
    if not rows:
        return
    try:
        texts = [row.text for row in rows]
        text_embeds = torch.from_numpy(source.texts(texts)) if scorer.needs_prompt and not scorer.joint else None
        batch = FeatureBatch(
            features={name: torch.from_numpy(np.stack([features[row.cell.image_key][name] for row in rows]))
                      for name in scorer.features},
            texts=texts, text_embeds=text_embeds, references=references,
            meta=source.meta if scorer.uses_meta else {}, images=images,
            backbone=source.backbone if scorer.joint else None)
        values = np.asarray(scorer.score(batch), dtype=np.float64)
    except Exception as error:  # one scorer's failure must not sink the others
        message = f"scorer '{entry.name}' failed: {type(error).__name__}: {error}"
        report.failures.extend((entry.name, row.cell.image_key, message) for row in rows)
        return
    good = []
    for row, value in zip(rows, values, strict=True):
        if np.isfinite(value):
            good.append((row.cell.image_key, row.context, float(value)))
        else:
            report.failures.append((entry.name, row.cell.image_key, f"scorer returned a non-finite value ({value})"))
    store.put_scores(entry.info.key, good)
    report.scored += len(good)
