"""Running ``python -m ckptbench run`` in a subprocess and interrupting it at a chosen point of its work.

A point is observed from outside, as an operator (or the OOM killer) would hit it: the store's
database, read-only, says how many images and scores exist and whether the latest run is finished;
the output files' times say how far the final writing got.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SRC = Path(__file__).resolve().parents[1] / "src"
OUTPUT_FILES = ("results.json", "scores.csv", "scores.parquet", "leaderboard.csv", "report/index.html")


@dataclass(frozen=True)
class KillPoint:
    """``images``/``scores``: when the store holds at least ``at`` of them; ``outputs``: when output file number
    ``at`` (0 = the run's status turning final, 1… = OUTPUT_FILES[at-1]) has been written by this process."""

    phase: str
    at: int
    signal: int = signal.SIGKILL

    def describe(self) -> str:
        if self.phase == "outputs":
            what = "the run is marked finished" if self.at == 0 else f"{OUTPUT_FILES[self.at - 1]} is written"
        else:
            what = f"{self.at} {self.phase} are stored"
        return f"{signal.Signals(self.signal).name} when {what}"


@dataclass(frozen=True)
class StoreState:
    images: int = 0
    scores: int = 0
    runs: int = 0
    latest_status: str | None = None


def store_state(store: Path) -> StoreState:
    database = store / "ckptbench.sqlite"
    if not database.is_file():
        return StoreState()
    try:
        db = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
        try:
            images = db.execute("SELECT count(*) FROM images").fetchone()[0]
            scores = db.execute("SELECT count(*) FROM scores").fetchone()[0]
            latest = db.execute("SELECT run_id, status FROM runs ORDER BY run_id DESC LIMIT 1").fetchone()
        finally:
            db.close()
    except sqlite3.OperationalError:  # the schema is being created
        return StoreState()
    return StoreState(images, scores, latest[0] if latest else 0, latest[1] if latest else None)


def environment() -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_HUB_DISABLE_PROGRESS_BARS="1",
               # One intra-op thread, as in the tests' own process: on a shared CPU, spinning threads make the
               # tiny models 10x slower, and the uninterrupted run must compute exactly as the resumed ones.
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def start_run(spec: Path, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "ckptbench", "run", str(spec), *extra], env=environment(),
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=spec.parent)


def run_to_end(spec: Path, log: Path, *extra: str, timeout: float = 120) -> int:
    process = start_run(spec, log, *extra)
    return process.wait(timeout=timeout)


@dataclass
class Interruption:
    point: KillPoint
    reached: bool  # the point was hit and the signal sent (else the run ended first)
    state_at_signal: StoreState
    returncode: int
    output: str


def interrupt_at(spec: Path, store: Path, point: KillPoint, log: Path, timeout: float = 120) -> Interruption:
    """Start a run, send ``point.signal`` once the point is reached, and wait for the process to end."""
    runs_before = store_state(store).runs
    started_ns = time.time_ns()
    process = start_run(spec, log)
    deadline = time.monotonic() + timeout
    reached, state = False, StoreState()
    while process.poll() is None and time.monotonic() < deadline:
        state = store_state(store)
        if _reached(point, state, runs_before, store, started_ns):
            process.send_signal(point.signal)
            reached = True
            break
        time.sleep(0.005)
    returncode = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    return Interruption(point, reached, state, returncode, log.read_text(errors="replace"))


def _reached(point: KillPoint, state: StoreState, runs_before: int, store: Path, started_ns: int) -> bool:
    # Only once this process has started its run: it then holds the lock, has cleaned up after the last
    # kill, and handles Ctrl-C (a point an earlier kill overshot is then hit right after the start).
    if state.runs <= runs_before:
        return False
    if point.phase == "images":
        return state.images >= point.at
    if point.phase == "scores":
        return state.scores >= point.at
    mine_finished = state.latest_status not in (None, "running")
    if point.at == 0:
        return mine_finished
    target = store / OUTPUT_FILES[point.at - 1]
    return mine_finished and target.is_file() and target.stat().st_mtime_ns >= started_ns


def comparable_results(store: Path) -> dict[str, Any]:
    """results.json without what differs between any two runs: run id, times, durations, the store's path, and
    what the generator of this run chose and measured (load seconds; empty when the run made no image)."""
    results = json.loads((store / "results.json").read_text())
    results["run"] = {"status": results["run"]["status"]}
    results["benchmark"].pop("store")
    results["provenance"].pop("duration_s")
    results["provenance"].pop("generation_runtime")
    return results


def images_and_scores(store: Path) -> tuple[dict[str, bytes], dict[tuple[str, str, str], float]]:
    """Every image's file bytes by key, and every score by (image, scorer key, context)."""
    db = sqlite3.connect(f"{(store / 'ckptbench.sqlite').resolve().as_uri()}?mode=ro", uri=True)
    try:
        images = {key: (store / path).read_bytes() for key, path in db.execute("SELECT key, path FROM images")}
        scores = {(row[0], row[1], row[2]): row[3] for row in
                  db.execute("SELECT image_key, scorer_key, context_key, value FROM scores")}
    finally:
        db.close()
    return images, scores


def leftovers(store: Path) -> list[str]:
    """Temporary files anywhere in the store, and image files without a row or rows without a file."""
    found = [f"temporary {path.relative_to(store)}" for path in store.rglob(".*.tmp")]
    db = sqlite3.connect(f"{(store / 'ckptbench.sqlite').resolve().as_uri()}?mode=ro", uri=True)
    try:
        recorded = {path for (path,) in db.execute("SELECT path FROM images")}
        running = [run for (run,) in db.execute("SELECT run_id FROM runs WHERE status = 'running'")]
    finally:
        db.close()
    files = {str(path.relative_to(store)) for path in (store / "images").glob("*/*.png")}
    found += [f"orphan image {path}" for path in sorted(files - recorded)]
    found += [f"image row without file {path}" for path in sorted(recorded - files)]
    found += [f"run {run} still 'running'" for run in running]
    return found
