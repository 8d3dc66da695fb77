from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from rich.console import Console

from ckptbench.runner import run_benchmark
from ckptbench.spec_load import load_spec
from tests.html_tables import read_table

QUIET = Console(file=open("/dev/null", "w"))  # noqa: SIM115 - lives for the test session


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, tiny_models) -> dict:
    """One complete run over the tiny models, then a second run of the same spec."""
    from tests.conftest import write_spec_text

    folder = tmp_path_factory.mktemp("run")
    spec_path = folder / "spec.toml"
    spec_path.write_text(write_spec_text(tiny_models))
    first = run_benchmark(load_spec(spec_path), console=QUIET)
    store = folder / "store"
    mtimes = {p: p.stat().st_mtime_ns for p in store.glob("images/*/*.png")}
    second = run_benchmark(load_spec(spec_path), console=QUIET)
    return {"first": first, "second": second, "store": store, "mtimes": mtimes, "spec": spec_path}


def test_first_run_generates_and_scores_everything(finished_run) -> None:
    first = finished_run["first"]
    assert first.generated == 2 * 2 * 2  # checkpoints × prompts × seeds
    assert first.scored == 8 * 2
    assert first.failed_checkpoints == []


def test_second_run_does_no_work_and_rewrites_no_image(finished_run) -> None:
    second = finished_run["second"]
    assert (second.generated, second.scored) == (0, 0)
    assert (second.cached_images, second.cached_scores) == (8, 16)
    now = {p: p.stat().st_mtime_ns for p in finished_run["store"].glob("images/*/*.png")}
    assert now == finished_run["mtimes"]


def test_results_json_matches_hand_computed_statistics(finished_run) -> None:
    store: Path = finished_run["store"]
    results = json.loads((store / "results.json").read_text())
    scores = pd.read_csv(store / "scores.csv")
    assert len(scores) == 16 and scores["value"].notna().all()
    assert set(results["scorers"]) == {"laion-aesthetic-v2", "clip-score"}
    for info in results["scorers"].values():
        assert len(info["weights_sha256"]) == 64 and info["version"] and isinstance(info["higher_is_better"], bool)
    for checkpoint in results["checkpoints"]:
        assert checkpoint["status"] == "ok" and len(checkpoint["sha256"]) == 64
        for scorer, summary in checkpoint["scores"].items():
            values = scores[(scores.checkpoint == checkpoint["name"]) & (scores.scorer == scorer)]
            assert summary["n"] == 4
            assert summary["mean"] == pytest.approx(values["value"].mean(), abs=1e-12)
            assert summary["pooled_std"] == pytest.approx(values["value"].std(ddof=1), abs=1e-12)
            per_prompt = values.groupby("prompt")["value"].std(ddof=1)
            assert summary["seed_std"] == pytest.approx(per_prompt.mean(), abs=1e-12)
            low, high = summary["ci95"]
            assert np.isfinite(low) and np.isfinite(high) and low <= summary["mean"] <= high


def test_report_has_one_leaderboard_row_per_checkpoint(finished_run) -> None:
    html = (finished_run["store"] / "report" / "index.html").read_text()
    header, rows = read_table(html, "leaderboard")
    assert sorted(row[1] for row in rows) == ["a", "b"]
    assert any("laion-aesthetic-v2" in h for h in header) and any("clip-score" in h for h in header)


def test_images_carry_infotext_and_live_under_their_key(finished_run) -> None:
    from PIL import Image

    scores = pd.read_csv(finished_run["store"] / "scores.csv")
    row = scores.iloc[0]
    path = finished_run["store"] / row["image"]
    assert path.name == f"{row['image_key']}.png"
    with Image.open(path) as image:
        assert image.size == (64, 64)
        assert f"Seed: {row['seed']}" in image.text["parameters"]


def test_a_broken_checkpoint_is_recorded_and_the_run_continues(tmp_path, write_spec, tiny_models) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(tiny_models["single_a"].read_bytes()[:5000])
    spec = write_spec(checkpoints=f'''
        [[checkpoints]]
        name = "broken"
        path = "{broken}"

        [[checkpoints]]
        name = "b"
        path = "{tiny_models['folder_b']}"
    ''')
    outcome = run_benchmark(load_spec(spec), console=QUIET)
    assert outcome.failed_checkpoints == ["broken"]
    results = json.loads((outcome.results_path).read_text())
    by_name = {c["name"]: c for c in results["checkpoints"]}
    assert by_name["broken"]["status"] == "failed" and "broken.safetensors" in by_name["broken"]["error"]
    assert by_name["b"]["status"] == "ok" and by_name["b"]["scores"]["clip-score"]["n"] == 4
    assert results["run"]["status"] == "partial" and outcome.status == "partial"  # a checkpoint made nothing


def test_store_flag_overrides_spec(tmp_path, write_spec) -> None:
    spec = write_spec(suites='[[suites]]\nname = "q"\nprompts = ["a cat"]', generation="width = 64\nheight = 64\n"
                      "steps = 2\nseeds = [3]")
    outcome = run_benchmark(load_spec(spec), store_root=tmp_path / "elsewhere", console=QUIET)
    assert outcome.store == tmp_path / "elsewhere" and (tmp_path / "elsewhere" / "results.json").is_file()
    assert not (tmp_path / "store").exists()


def test_a_second_run_on_a_locked_store_is_refused(tmp_path) -> None:
    from ckptbench.errors import StoreError
    from ckptbench.store import Store

    first, second = Store(tmp_path), Store(tmp_path)
    with first.exclusive(), pytest.raises(StoreError, match=r"pid \d+"), second.exclusive():
        pass
    first.close()
    second.close()
