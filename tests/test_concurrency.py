"""Two processes on one store: a second `ckptbench run` is refused with the holder's pid, `ckptbench report`
reads a store while a run writes it, and the store ends complete and consistent.

The first run is a real subprocess; it is paused (SIGSTOP) while the others try the store, so that it
surely holds the lock and an open write transaction at that moment whatever the machine's speed.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

from ckptbench.cli import app
from tests.conftest import write_spec_text
from tests.kill_harness import environment, images_and_scores, leftovers, start_run, store_state


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_second_run_is_refused_and_a_report_reads_while_a_run_writes(tmp_path: Path, tiny_models) -> None:
    spec = tmp_path / "spec.toml"
    generation = 'sampler = "Euler"\nsteps = 2\nwidth = 64\nheight = 64\nseeds = [1, 2]\nbatch_size = 1'
    spec.write_text(write_spec_text(tiny_models, generation=generation))
    store = tmp_path / "store"
    first = start_run(spec, tmp_path / "first.log")
    runner = CliRunner()
    try:
        _wait_for(lambda: store_state(store).images >= 1 or first.poll() is not None)
        assert first.poll() is None, (tmp_path / "first.log").read_text()
        # A report of the run so far, read while the run writes (no pause yet).
        snapshot = runner.invoke(app, ["report", "--store", str(store), "--out", str(tmp_path / "snap-1")])
        assert snapshot.exit_code == 0, snapshot.output
        assert json.loads((tmp_path / "snap-1" / "results.json").read_text())["run"]["status"] == "running"

        os.kill(first.pid, signal.SIGSTOP)
        try:
            second = subprocess.run([sys.executable, "-m", "ckptbench", "run", str(spec)], env=environment(),
                                    capture_output=True, text=True, timeout=120, cwd=tmp_path)
            refused = runner.invoke(app, ["report", "--store", str(store)])
            paused = runner.invoke(app, ["report", "--store", str(store), "--out", str(tmp_path / "snap-2")])
        finally:
            os.kill(first.pid, signal.SIGCONT)
        assert first.wait(timeout=120) == 0, (tmp_path / "first.log").read_text()
    finally:
        if first.poll() is None:
            first.kill()

    message = " ".join((second.stdout + second.stderr).split())
    assert second.returncode == 2, message
    assert f"another ckptbench run (pid {first.pid}) is using this store; wait for it to finish or use another " \
           "--store." in message and "Traceback" not in message
    assert refused.exit_code == 2 and f"a ckptbench run (pid {first.pid}) is writing to this store" in " ".join(
        refused.output.split())
    assert paused.exit_code == 0, paused.output

    # The store is whole: one run, finished, every image and score there, nothing half-written.
    state = store_state(store)
    assert (state.runs, state.latest_status, state.images, state.scores) == (1, "ok", 8, 16)
    assert leftovers(store) == []
    database = sqlite3.connect(store / "ckptbench.sqlite")
    assert database.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    database.close()
    images, scores = images_and_scores(store)
    assert len(images) == 8 and len(scores) == 16
    results = json.loads((store / "results.json").read_text())
    assert results["run"]["status"] == "ok" and all(c["images"]["ok"] == 4 for c in results["checkpoints"])
