"""``ckptbench run --dry-run``: cached and new work counted as the run that follows finds it, nothing written,
and time estimated from the throughput earlier runs recorded."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ckptbench.cli import app
from ckptbench.dry_run import dry_run
from ckptbench.runner import run_benchmark
from ckptbench.spec_load import load_spec
from ckptbench.store import Throughput
from ckptbench.throughput import Need, estimate

QUIET = Console(quiet=True)
GENERATION = 'sampler = "Euler"\nsteps = 3\nwidth = 64\nheight = 64\nbatch_size = 4\nseeds = '


def _runs(store: Path) -> int:
    with sqlite3.connect(store / "ckptbench.sqlite") as db:
        return int(db.execute("SELECT count(*) FROM runs").fetchone()[0])


def test_dry_run_after_a_partial_run_counts_what_the_next_run_does(write_spec) -> None:
    first = load_spec(write_spec("first.toml", generation=GENERATION + "[1]"))
    done = run_benchmark(first, console=QUIET)
    assert done.generated == 4 and done.scored == 8  # 2 checkpoints × 2 prompts × 1 seed, 2 scorers
    store = first.store_path

    spec_path = write_spec("second.toml", generation=GENERATION + "[1, 2, 3]")
    planned = dry_run(load_spec(spec_path), console=QUIET)
    assert [(c.name, c.cached, c.new) for c in planned.checkpoints] == [("a", 2, 4), ("b", 2, 4)]
    assert [(s.name, s.level, s.cached, s.new) for s in planned.scorers] == [
        ("laion-aesthetic-v2", "image", 4, 8), ("clip-score", "image", 4, 8)]
    # One backbone for both scorers: only the new images go through it (the others' features are stored).
    assert list(planned.forward_images.values()) == [8]
    assert _runs(store) == 1  # nothing recorded

    # The first run measured this CPU: the estimate covers both stages with nothing missing.
    (guess,) = planned.estimates
    assert guess.device_kind == "cpu" and guess.missing == () and guess.seconds > 0

    result = CliRunner().invoke(app, ["run", str(spec_path), "--dry-run"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "8 images to generate, 16 scores to compute" in result.output
    assert "estimate on cpu" in result.output and _runs(store) == 1

    second = run_benchmark(load_spec(spec_path), console=QUIET)
    assert (second.generated, second.cached_images) == (planned.images_new, 4)
    assert (second.scored, second.cached_scores) == (planned.scores_new, 8)
    again = dry_run(load_spec(spec_path), console=QUIET)
    assert again.images_new == 0 and again.scores_new == 0


def test_estimate_applies_measured_rates_per_device() -> None:
    history = [
        Throughput("generate", "sd15 fp16", "cuda", "GPU X", "local", 40, 400.0, 20.0, 6.0, 2),
        Throughput("score", "hf-clip:m fp16", "cuda", "GPU X", "local", 100, 100.0, 5.0, 4.0, 1),
        Throughput("generate", "sd15 fp32", "cpu", "CPU Y (2 threads)", "local", 4, 10.0, 50.0, 1.0, 1),
    ]
    needs = [Need("generate", "sd15", "auto", 100.0, 3), Need("score", "hf-clip:m", "auto", 20, 1)]
    gpu, cpu = estimate(needs, history)
    # GPU: 100 units × (20 s / 400 units) + 3 tasks × (6 s / 2 tasks) + 20 images × 0.05 s + 1 × 4 s
    assert gpu.device_name == "GPU X" and gpu.missing == ()
    assert gpu.seconds == pytest.approx(100 * 0.05 + 3 * 3.0 + 20 * 0.05 + 4.0)
    # CPU: 'auto' is fp32 there; scoring was never measured on it, so it is named, not guessed.
    assert cpu.seconds == pytest.approx(100 * 5.0 + 3 * 1.0)
    assert cpu.missing == ("score hf-clip:m fp32",)
