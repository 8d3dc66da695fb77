"""Scoring as a Ray worker does it, run in this process: the driver packs what a task reads from the store
and the files whose features are not cached, the task scores against that snapshot, the driver replays its
writes. The store must end up with the same scores, features and set scores as when scoring writes directly."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import torch

from ckptbench.executors.local import LocalExecutor
from ckptbench.executors.ray_executor import run_scoring
from ckptbench.executors.snapshot import pack
from ckptbench.executors.tasks import scoring_groups
from ckptbench.metrics.engine import ScoreCell, plan_scoring, prepare_scorers
from ckptbench.metrics.set_engine import plan_sets
from ckptbench.spec import ScorersSpec
from ckptbench.store import Store

CPU = torch.device("cpu")
SCORERS = ("laion-aesthetic-v2", "clip-score", "style-gram", "cmmd")


def _table(store: Path, query: str) -> list[tuple]:
    with sqlite3.connect(store / "ckptbench.sqlite") as db:
        return sorted(db.execute(query).fetchall())


@pytest.fixture
def scoring_setup(tiny_scorer_options, tiny_scorer_models):
    spec = ScorersSpec.model_validate({"use": list(SCORERS), **{name: tiny_scorer_options(name) for name in SCORERS}})
    images = sorted(Path(tiny_scorer_models["images"]).glob("*.png"))

    def plans(store: Store):
        prepared = prepare_scorers(spec, CPU, store)
        cells = [ScoreCell(item=i, checkpoint="c", suite="s", image_key=f"img{i}", image_path=path,
                           prompt=f"a photo number {i}") for i, path in enumerate(images)]
        return prepared, plan_scoring(store, None, prepared, cells), plan_sets(store, None, prepared, cells)

    return plans


def test_snapshot_scoring_writes_what_direct_scoring_writes(tmp_path: Path, scoring_setup) -> None:
    direct = Store(tmp_path / "direct")
    prepared, plan, set_plan = scoring_setup(direct)
    outcome = LocalExecutor().score(direct, prepared, plan, set_plan, CPU, None)
    assert not outcome.report.failures and not outcome.set_report.failures
    direct.close()

    remote = Store(tmp_path / "remote")
    prepared, plan, set_plan = scoring_setup(remote)
    payloads = [pack(remote, entries, plan, None) for entries in scoring_groups(prepared, plan)]
    # Nothing is cached yet: the CLIP group needs the 6 images, style-gram's VGG group also its 3 references.
    assert sorted(len(p.files) for p in payloads) == [6, 9]
    for payload in payloads:
        part, writes = run_scoring(payload, "cpu", 1)
        assert not part.report.failures
        for method, arguments in writes:
            getattr(remote, method)(*arguments)
    (set_payload,) = [pack(remote, [e], None, set_plan) for e in prepared if set_plan.todo.get(e.name)]
    # The set scorer reuses the CLIP features the image pass stored: only its 3 reference images travel.
    assert sorted(Path(name).parent.name for name in set_payload.files) == ["references"] * 3
    part, writes = run_scoring(set_payload, "cpu", 1)
    assert not part.set_report.failures and part.measures[0].images == 3
    for method, arguments in writes:
        getattr(remote, method)(*arguments)
    remote.close()

    scores = "SELECT image_key, scorer_key, context_key, value FROM scores"
    set_scores = "SELECT scorer_key, set_key, images, references_count, value FROM set_scores"
    for query in (scores, set_scores):
        ours, theirs = _table(tmp_path / "direct", query), _table(tmp_path / "remote", query)
        assert len(ours) == len(theirs) > 0
        for a, b in zip(ours, theirs, strict=True):  # keys equal, values to 1e-6 (the value is last)
            assert a[:-1] == b[:-1] and abs(a[-1] - b[-1]) <= 1e-6
    vectors = "SELECT image_key, backbone_key, vector FROM embeddings"
    assert _table(tmp_path / "direct", vectors) == _table(tmp_path / "remote", vectors)
