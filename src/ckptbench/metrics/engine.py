"""Scoring a run's images: scorers grouped by backbone, one forward pass per image per backbone.

Embeddings are cached in the store by (image key, backbone key), so a head added later costs no new
forward pass; text embeddings are computed once per distinct text per run.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPTokenizer

from ckptbench.device import resolve_dtype_name
from ckptbench.hashing import DigestCache, content_key
from ckptbench.metrics.backbones import HF_CLIP, HFClipBackbone, resolve_hf_clip
from ckptbench.metrics.base import BackboneSpec, FeatureBatch, Scorer, ScorerInfo
from ckptbench.metrics.registry import create_scorer
from ckptbench.spec import ScorersSpec
from ckptbench.store import Store


@dataclass(frozen=True)
class ScoreCell:
    """One image of a run that a scorer must answer for."""

    item: int
    suite: str
    image_key: str
    image_path: Path
    prompt: str


@dataclass
class PreparedScorer:
    name: str
    scorer: Scorer
    backbone: BackboneSpec
    info: ScorerInfo


@dataclass
class ScoringPlan:
    todo: dict[str, list[tuple[ScoreCell, str, str]]]  # scorer → (cell, text, context key) to compute
    cached: int = 0
    truncated: dict[str, dict[str, int]] = field(default_factory=dict)  # scorer → suite → prompts truncated

    @property
    def count(self) -> int:
        return sum(len(rows) for rows in self.todo.values())


@dataclass
class ScoringReport:
    scored: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (scorer, image key, message)


def prepare_scorers(scorers: ScorersSpec, device: torch.device, cache: DigestCache | None) -> list[PreparedScorer]:
    """Resolve every scorer's weights and compute its identity, without loading any model."""
    prepared = []
    for name in scorers.use:
        options = scorers.options_for(name)
        scorer = create_scorer(name, options)
        dtype = resolve_dtype_name(options.dtype, device)
        backbone = resolve_backbone(scorer.backbone_kind, scorer.model_source, dtype, name, cache)
        prepared.append(PreparedScorer(name, scorer, backbone, scorer.info(backbone)))
    return prepared


def resolve_backbone(kind: str, source: str, dtype: str, scorer: str, cache: DigestCache | None) -> BackboneSpec:
    if kind == HF_CLIP:
        return resolve_hf_clip(source, dtype, scorer, cache)
    raise ValueError(f"scorer '{scorer}' asks for unknown backbone kind '{kind}'")


def load_backbone(spec: BackboneSpec, device: torch.device) -> HFClipBackbone:
    if spec.kind == HF_CLIP:
        return HFClipBackbone(spec, device)
    raise ValueError(f"unknown backbone kind '{spec.kind}'")


def context_key(text: str) -> str:
    return content_key(text) if text else ""


def plan_scoring(store: Store, run_id: int, prepared: Sequence[PreparedScorer], cells: Sequence[ScoreCell]
                 ) -> ScoringPlan:
    """Record which score answers each cell of the run, and find the ones not in the store yet."""
    plan = ScoringPlan(todo={})
    for entry in prepared:
        store.put_scorer(entry.info.key, entry.name, entry.info.as_dict())
        rows = []
        for cell in cells:
            text = entry.scorer.text_for(cell.prompt)
            rows.append((cell, text, context_key(text)))
        store.put_run_scores(run_id, [(cell.item, entry.name, entry.info.key, ctx) for cell, _, ctx in rows])
        existing = store.existing_scores(entry.info.key, [(cell.image_key, ctx) for cell, _, ctx in rows])
        seen: set[tuple[str, str]] = set()
        todo = []
        for cell, text, ctx in rows:
            pair = (cell.image_key, ctx)
            if pair in existing or pair in seen:
                plan.cached += pair in existing
                continue
            seen.add(pair)
            todo.append((cell, text, ctx))
        plan.todo[entry.name] = todo
        if entry.scorer.needs_prompt:
            plan.truncated[entry.name] = count_truncated(entry.backbone, rows)
    return plan


def count_truncated(backbone: BackboneSpec, rows: Sequence[tuple[ScoreCell, str, str]]) -> dict[str, int]:
    """Distinct prompt texts per suite longer than the text encoder's context (they get truncated)."""
    tokenizer = CLIPTokenizer.from_pretrained(backbone.folder)
    config = json.loads((Path(backbone.folder) / "config.json").read_text())
    limit = int(config.get("text_config", {}).get("max_position_embeddings", 77))
    lengths: dict[str, int] = {}
    per_suite: dict[str, set[str]] = defaultdict(set)
    for cell, text, _ in rows:
        if text not in lengths:
            lengths[text] = len(tokenizer(text, truncation=False)["input_ids"])
        if lengths[text] > limit:
            per_suite[cell.suite].add(text)
    return {suite: len(texts) for suite, texts in sorted(per_suite.items())}


def execute_scoring(store: Store, prepared: Sequence[PreparedScorer], plan: ScoringPlan, device: torch.device,
                    advance: Callable[[str, int, int], None] | None = None) -> ScoringReport:
    """Compute the planned scores, one backbone at a time; ``advance(label, done, total)`` reports progress."""
    report = ScoringReport()
    groups: dict[str, list[PreparedScorer]] = defaultdict(list)
    for entry in prepared:
        if plan.todo.get(entry.name):
            groups[entry.backbone.key].append(entry)
    for entries in groups.values():
        _score_group(store, entries, plan, device, report, advance)
    return report


def _score_group(store: Store, entries: list[PreparedScorer], plan: ScoringPlan, device: torch.device,
                 report: ScoringReport, advance: Callable[[str, int, int], None] | None) -> None:
    spec = entries[0].backbone
    backbone = load_backbone(spec, device)
    for entry in entries:
        entry.scorer.load(device)
    paths: dict[str, Path] = {}
    for entry in entries:
        for cell, _, _ in plan.todo[entry.name]:
            paths[cell.image_key] = cell.image_path
    image_keys = list(paths)
    batch_size = min(entry.scorer.options.batch_size for entry in entries)
    text_cache: dict[str, np.ndarray] = {}
    label = f"scoring: {', '.join(e.name for e in entries)}"
    for start in range(0, len(image_keys), batch_size):
        chunk = image_keys[start : start + batch_size]
        embeddings = _image_embeddings(store, backbone, chunk, paths, entries, report)
        for entry in entries:
            rows = [row for row in plan.todo[entry.name] if row[0].image_key in embeddings
                    and row[0].image_key in set(chunk)]
            if rows:
                _score_rows(store, backbone, entry, rows, embeddings, text_cache, report)
        if advance:
            advance(label, min(start + batch_size, len(image_keys)), len(image_keys))


def _image_embeddings(store: Store, backbone: HFClipBackbone, keys: list[str], paths: dict[str, Path],
                      entries: list[PreparedScorer], report: ScoringReport) -> dict[str, np.ndarray]:
    cached = store.embeddings(backbone.spec.key, keys)
    needed = [key for key in keys if key not in cached]
    images, loaded = [], []
    for key in needed:
        try:
            with Image.open(paths[key]) as image:
                images.append(image.convert("RGB"))
            loaded.append(key)
        except Exception as error:  # an unreadable image fails its own scores only
            for entry in entries:
                report.failures.append((entry.name, key, f"cannot read image {paths[key]}: {error}"))
    if images:
        vectors = backbone.embed_images(images)
        fresh = dict(zip(loaded, vectors, strict=True))
        store.put_embeddings(backbone.spec.key, fresh)
        cached.update(fresh)
    return cached


def _score_rows(store: Store, backbone: HFClipBackbone, entry: PreparedScorer,
                rows: list[tuple[ScoreCell, str, str]], embeddings: dict[str, np.ndarray],
                text_cache: dict[str, np.ndarray], report: ScoringReport) -> None:
    texts = [text for _, text, _ in rows]
    text_embeds = None
    if entry.scorer.needs_prompt:
        new_texts = sorted({t for t in texts if t not in text_cache})
        if new_texts:
            text_cache.update(zip(new_texts, backbone.embed_texts(new_texts), strict=True))
        text_embeds = torch.from_numpy(np.stack([text_cache[t] for t in texts]))
    batch = FeatureBatch(
        image_embeds=torch.from_numpy(np.stack([embeddings[cell.image_key] for cell, _, _ in rows])),
        texts=texts, text_embeds=text_embeds)
    values = np.asarray(entry.scorer.score(batch), dtype=np.float64)
    good = []
    for (cell, _, ctx), value in zip(rows, values, strict=True):
        if np.isfinite(value):
            good.append((cell.image_key, ctx, float(value)))
        else:
            report.failures.append((entry.name, cell.image_key, f"scorer returned a non-finite value ({value})"))
    store.put_scores(entry.info.key, good)
    report.scored += len(good)
