"""Kill a real `ckptbench run` process at seeded random points, resume it each time, and check that the end
result is exactly that of a run never interrupted: same results.json, same image bytes, same scores, no
orphan or partial file.

The points are drawn from every phase: while images are stored, while scores are stored, and while the
outputs are written. Each resumed process is the one interrupted at the next point, so one chain of
processes covers them all; one point sends SIGINT instead (Ctrl-C), which must end the run cleanly.
"""

from __future__ import annotations

import random
import signal
from pathlib import Path

import pytest

from tests.conftest import scorers_text, write_spec_text
from tests.kill_harness import (
    OUTPUT_FILES,
    KillPoint,
    comparable_results,
    images_and_scores,
    interrupt_at,
    leftovers,
    run_to_end,
    store_state,
)

SEED = 20240608
PROMPTS = ["a red cube", "a blue sphere", "a green cone"]
SEEDS = [1, 2]
IMAGES = 2 * len(PROMPTS) * len(SEEDS)  # two checkpoints
SCORES = IMAGES * 2  # two scorers


def _spec_text(tiny_models: dict[str, Path]) -> str:
    # Batches of three images and scoring chunks of three: boundaries to interrupt at, and chunks that mix
    # prompts (a resumed run must embed each prompt exactly as the uninterrupted one did).
    prompts = ", ".join(f'"{prompt}"' for prompt in PROMPTS)
    return write_spec_text(
        tiny_models,
        generation=f'sampler = "Euler"\nsteps = 3\nwidth = 64\nheight = 64\nseeds = {SEEDS}\nbatch_size = 3',
        suites=f'[[suites]]\nname = "quality"\nprompts = [{prompts}]',
        scorers=scorers_text(tiny_models, ["laion-aesthetic-v2", "clip-score"], batch_size=3))


def draw_points(rng: random.Random) -> list[KillPoint]:
    """Eleven points in the order a run reaches them: 4 while generating (one of them Ctrl-C), 4 while
    scoring, 3 while writing the outputs."""
    images = sorted(rng.sample(range(1, IMAGES), 4))
    scores = sorted(rng.sample(range(1, SCORES), 4))
    outputs = sorted(rng.sample(range(len(OUTPUT_FILES)), 3))
    points = [KillPoint("images", at) for at in images]
    ctrl_c = rng.randrange(1, len(points))  # not the first: Ctrl-C must meet a run that has a store to save
    points[ctrl_c] = KillPoint("images", images[ctrl_c], signal.SIGINT)
    return points + [KillPoint("scores", at) for at in scores] + [KillPoint("outputs", at) for at in outputs]


@pytest.mark.slow
def test_killed_and_resumed_runs_end_exactly_like_an_uninterrupted_one(tmp_path: Path, tiny_models) -> None:
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text(tiny_models))
    baseline_store = tmp_path / "baseline"
    assert run_to_end(spec, tmp_path / "baseline.log", "--store", str(baseline_store)) == 0
    store = tmp_path / "store"

    points = draw_points(random.Random(SEED))
    log = []
    for index, point in enumerate(points):
        before = store_state(store)
        outcome = interrupt_at(spec, store, point, tmp_path / f"run-{index}.log")
        log.append(f"{point.describe()}: sent at {outcome.state_at_signal}, exit {outcome.returncode}; "
                   f"store before {before}")
        assert outcome.reached, f"{point.describe()} was never reached:\n{outcome.output}"
        if point.signal == signal.SIGKILL:
            assert outcome.returncode == -signal.SIGKILL, outcome.output
        else:
            assert outcome.returncode == 130, outcome.output
            assert "interrupted" in outcome.output and f"ckptbench run {spec}" in outcome.output
            assert store_state(store).latest_status == "interrupted"
    assert run_to_end(spec, tmp_path / "final.log") == 0, (tmp_path / "final.log").read_text()
    print("\n".join(log))

    assert comparable_results(store) == comparable_results(baseline_store)
    images, scores = images_and_scores(store)
    expected_images, expected_scores = images_and_scores(baseline_store)
    assert len(images) == IMAGES and len(scores) == SCORES
    assert images == expected_images  # byte for byte
    assert scores == expected_scores  # exactly equal floats
    assert leftovers(store) == []
