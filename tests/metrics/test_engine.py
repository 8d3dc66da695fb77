"""The engine: one forward pass per image per backbone, cached features, per-case reference sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ckptbench.hashing import sha256_file
from ckptbench.metrics.engine import ScoreCell, execute_scoring, plan_scoring, prepare_scorers
from ckptbench.metrics.references import reference_set
from ckptbench.spec import ScorerOptions, ScorersSpec
from ckptbench.store import Store


def _cells(images: list[Path], references=None) -> list[ScoreCell]:
    return [ScoreCell(item=i, checkpoint="c", suite="s", image_key=f"file:{sha256_file(p)}", image_path=p,
                      prompt=f"prompt {i % 2}", references=references[i] if references else None)
            for i, p in enumerate(images)]


def _spec(models: dict[str, Path], names: tuple[str, ...]) -> ScorersSpec:
    options = {"laion-aesthetic-v2": ScorerOptions(model=str(models["clip"]), head=str(models["head"])),
               "clip-score": ScorerOptions(model=str(models["clip"])),
               "clip-cosine": ScorerOptions(model=str(models["clip"])),
               "style-clip": ScorerOptions(model=str(models["clip"]), references=str(models["references"])),
               "style-gram": ScorerOptions(model=str(models["vgg"]))}
    return ScorersSpec(use=names, options={name: options[name] for name in names})


def test_heads_share_one_forward_pass_and_a_later_head_costs_none(tiny_scorer_models, tmp_path) -> None:
    images = sorted(tiny_scorer_models["images"].glob("*.png"))
    store = Store(tmp_path / "store")
    cpu = torch.device("cpu")
    spec = _spec(tiny_scorer_models, ("laion-aesthetic-v2", "clip-score", "style-clip"))
    prepared = prepare_scorers(spec, cpu, store)
    assert len({entry.backbone.key for entry in prepared}) == 1
    plan = plan_scoring(store, None, prepared, _cells(images))
    report = execute_scoring(store, prepared, plan, cpu)
    # 6 images + 3 reference images, each through CLIP once, although three heads read them.
    assert report.forward_images == len(images) + 3
    assert report.scored == 3 * len(images) and not report.failures

    later = prepare_scorers(_spec(tiny_scorer_models, ("clip-cosine",)), cpu, store)
    plan = plan_scoring(store, None, later, _cells(images))
    report = execute_scoring(store, later, plan, cpu)
    assert report.forward_images == 0 and report.scored == len(images)
    # Everything is now in the store: nothing left to compute.
    again = plan_scoring(store, None, prepared + later, _cells(images))
    assert again.count == 0 and again.cached == 4 * len(images)


def test_each_case_is_compared_with_its_own_references(tiny_scorer_models, tmp_path) -> None:
    images = sorted(tiny_scorer_models["images"].glob("*.png"))
    references = sorted(tiny_scorer_models["references"].glob("*.png"))
    store = Store(tmp_path / "store")
    sets = [reference_set([references[0]], None, "t"), reference_set(references[1:], None, "t")]
    cells = _cells(images, [sets[i % 2] for i in range(len(images))])
    cpu = torch.device("cpu")
    prepared = prepare_scorers(_spec(tiny_scorer_models, ("style-gram",)), cpu, store)
    plan = plan_scoring(store, None, prepared, cells)
    assert {row.context for row in plan.todo["style-gram"]} == {f"refs:{s.key}" for s in sets}
    report = execute_scoring(store, prepared, plan, cpu)
    assert report.scored == len(images) and not report.failures
    # A reference set is summarised once and kept: the summary is in the store.
    for reference in sets:
        summary = store.reference_summary(reference.key, prepared[0].info.key)
        assert summary is not None and np.isfinite(summary["mean"]).all()
    # An image that is itself the single reference of its set scores (about) zero.
    own = _cells([references[0]], [sets[0]])
    plan = plan_scoring(store, None, prepared, own)
    execute_scoring(store, prepared, plan, cpu)
    (value,) = store.score_values(prepared[0].info.key, [(own[0].image_key, f"refs:{sets[0].key}")]).values()
    assert abs(value) < 1e-9


def test_a_reference_set_that_cannot_be_read_fails_only_its_own_cases(tiny_scorer_models, tmp_path) -> None:
    images = sorted(tiny_scorer_models["images"].glob("*.png"))
    references = sorted(tiny_scorer_models["references"].glob("*.png"))
    spoiled = tmp_path / "spoiled.png"
    spoiled.write_bytes(references[1].read_bytes())
    sets = [reference_set([references[0]], None, "t"), reference_set([spoiled], None, "t")]
    spoiled.write_bytes(b"overwritten after the run checked it")  # the set still names it by its old digest
    cells = _cells(images, [sets[i % 2] for i in range(len(images))])
    cpu = torch.device("cpu")
    store = Store(tmp_path / "store")
    prepared = prepare_scorers(_spec(tiny_scorer_models, ("style-gram",)), cpu, store)
    report = execute_scoring(store, prepared, plan_scoring(store, None, prepared, cells), cpu)
    # The cases of the good set, in the same chunk as the others, still score.
    assert report.scored == len(images) // 2
    assert sorted(key for _, key, _ in report.failures) == sorted(c.image_key for c in cells[1::2])
    for _, _, message in report.failures:
        assert f"cannot read reference image {spoiled}" in message and "replace it with a readable image" in message
