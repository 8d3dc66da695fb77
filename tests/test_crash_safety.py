"""Crash safety in-process: cleanup after a kill, whole batches remade, Ctrl-C, a full disk.

The subprocess kill/resume harness (test_kill_resume, slow) checks the same end to end with real
SIGKILLs; these tests pin each mechanism on its own, fast and deterministically.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sqlite3
import stat
from pathlib import Path

import pytest
from PIL import Image
from rich.console import Console
from typer.testing import CliRunner

from ckptbench.atomic import atomic_write_bytes
from ckptbench.cli import app
from ckptbench.errors import DiskFullError
from ckptbench.runner import run_benchmark
from ckptbench.spec_load import load_spec
from ckptbench.store import Store
from tests.conftest import scorers_text, write_spec_text
from tests.kill_harness import images_and_scores, leftovers

QUIET = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - lives for the test session


def _spec_text(tiny_models: dict[str, Path]) -> str:
    """One checkpoint × 2 prompts × 4 seeds in generation batches and scoring chunks of 4: 8 images, 16 scores."""
    return write_spec_text(
        tiny_models,
        checkpoints=f'[[checkpoints]]\nname = "b"\npath = "{tiny_models["folder_b"]}"',
        generation='sampler = "Euler"\nsteps = 2\nwidth = 64\nheight = 64\nseeds = [1, 2, 3, 4]\nbatch_size = 4',
        suites='[[suites]]\nname = "q"\nprompts = ["a red cube", "a blue sphere"]',
        scorers=scorers_text(tiny_models, ["laion-aesthetic-v2", "clip-score"], batch_size=4))


def _spec(tmp_path: Path, tiny_models: dict[str, Path]) -> Path:
    spec = tmp_path / "spec.toml"
    spec.write_text(_spec_text(tiny_models))
    return spec


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, tiny_models) -> Path:
    """The store of the spec above, run once without interruption."""
    spec = _spec(tmp_path_factory.mktemp("uninterrupted"), tiny_models)
    run_benchmark(load_spec(spec), console=QUIET)
    return spec.parent / "store"


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path)


def test_recovery_removes_what_a_kill_leaves_and_marks_the_run_interrupted(tmp_path: Path) -> None:
    store = Store(tmp_path)
    kept = store.put_image("ab" + "0" * 62, Image.new("RGB", (8, 8)), "infotext", checkpoint_sha256="c",
                           prompt="p", negative_prompt="", seed=1, settings={}, backend="b", seconds=None)
    gone_key = "cd" + "1" * 62
    gone = store.put_image(gone_key, Image.new("RGB", (8, 8)), "infotext", checkpoint_sha256="c", prompt="p",
                           negative_prompt="", seed=2, settings={}, backend="b", seconds=None)
    store.put_scores("scorer", [(gone_key, "", 1.0), ("ab" + "0" * 62, "", 2.0)])
    gone.unlink()  # a file deleted by hand: its row and score must not outlive it
    orphan = store.image_file("ef" + "2" * 62)
    _png(orphan)  # killed between the file's rename and its row
    temporary = store.images_dir / "ab" / ".x.png.k3j2.tmp"
    temporary.write_bytes(b"half")  # killed inside an atomic write
    report_temporary = tmp_path / "report" / "thumbs" / ".y.webp.abc.tmp"
    report_temporary.parent.mkdir(parents=True)
    report_temporary.write_bytes(b"")
    killed_run = store.start_run({}, {})
    store.close()

    reopened = Store(tmp_path)
    with reopened.exclusive():
        recovered = reopened.recovered
        assert (recovered.temporaries, recovered.orphan_images, recovered.missing_images) == (2, 1, 1)
        assert recovered.interrupted_runs == [killed_run]
        assert "run 1 had been interrupted" in recovered.describe()
        assert reopened.run(killed_run)["status"] == "interrupted"
        assert reopened.existing_images([gone_key, "ab" + "0" * 62]) == {"ab" + "0" * 62}
        assert reopened.existing_scores("scorer", [(gone_key, ""), ("ab" + "0" * 62, "")]) == {("ab" + "0" * 62, "")}
    assert kept.is_file() and not orphan.exists() and not temporary.exists() and not report_temporary.exists()
    with reopened.exclusive():
        assert reopened.recovered.describe() == ""  # nothing left to do the second time
    reopened.close()


def test_a_batch_cut_short_by_a_kill_is_remade_whole(tmp_path: Path, uninterrupted: Path, tiny_models) -> None:
    """A kill after the third image of a batch of four (so before any scoring): the resumed run remakes the whole
    batch, so the missing image is the bytes an uninterrupted run makes."""
    spec = _spec(tmp_path, tiny_models)
    store = tmp_path / "store"
    shutil.copytree(uninterrupted, store)
    db = sqlite3.connect(store / "ckptbench.sqlite")
    # The second batch in generation order is seeds 1-4 of the second prompt; the kill came after its third
    # image (made alone, the fourth differs from the one made in the batch: checked without the remaking).
    rows = db.execute("SELECT key, path FROM images WHERE prompt = 'a blue sphere' ORDER BY seed").fetchall()
    for key, path in rows[3:]:
        db.execute("DELETE FROM images WHERE key = ?", (key,))
        (store / path).unlink()
    db.execute("DELETE FROM scores")
    db.execute("DELETE FROM embeddings")
    db.commit()
    db.close()

    outcome = run_benchmark(load_spec(spec), console=QUIET)
    assert (outcome.generated, outcome.cached_images) == (1, 7)
    assert images_and_scores(store) == images_and_scores(uninterrupted)


def _sigint_after(calls: int, target: object, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``target.name`` send this process SIGINT (a real Ctrl-C) once it has been called ``calls`` times."""
    original = getattr(target, name)
    count = {"n": 0}

    def wrapped(*args, **kwargs):
        result = original(*args, **kwargs)
        count["n"] += 1
        if count["n"] == calls:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(target, name, wrapped)


@pytest.mark.parametrize("phase", ["generation", "scoring"])
def test_ctrl_c_finishes_the_batch_saves_and_says_how_to_resume(phase: str, tmp_path: Path, uninterrupted: Path,
                                                                 tiny_models,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    spec = _spec(tmp_path, tiny_models)
    if phase == "generation":
        _sigint_after(1, Store, "put_image_png", monkeypatch)  # Ctrl-C while the first batch is being saved
    else:
        _sigint_after(1, Store, "put_scores", monkeypatch)  # Ctrl-C inside the first scoring chunk
    result = CliRunner().invoke(app, ["run", str(spec)])
    monkeypatch.undo()
    assert result.exit_code == 130, result.output
    assert f"Resume with `ckptbench run {spec}`" in result.output.replace("\n", "")
    store = tmp_path / "store"
    images, scores = images_and_scores(store)
    if phase == "generation":
        assert (len(images), len(scores)) == (4, 0)  # the batch in progress, whole; nothing scored
    else:
        assert (len(images), len(scores)) == (8, 8)  # the chunk in progress (4 images × 2 scorers) kept
    results = json.loads((store / "results.json").read_text())
    assert results["run"]["status"] == "interrupted"
    assert leftovers(store) == []

    resumed = CliRunner().invoke(app, ["run", str(spec)])
    assert resumed.exit_code == 0, resumed.output
    assert images_and_scores(store) == images_and_scores(uninterrupted)


def _full_disk_after(writes: int, monkeypatch: pytest.MonkeyPatch, name_part: str) -> None:
    """Every atomic write of a file whose name contains ``name_part`` fails with ENOSPC after ``writes`` of
    them succeeded (injected at fsync, inside atomic_write_bytes, after the data went to the temporary)."""
    original = os.fsync
    seen = {"n": 0}

    def fsync(descriptor: int) -> None:
        target = os.readlink(f"/proc/self/fd/{descriptor}")
        if stat.S_ISREG(os.fstat(descriptor).st_mode) and name_part in target:
            seen["n"] += 1
            if seen["n"] > writes:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        original(descriptor)

    monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.parametrize(("where", "name_part", "writes"), [("an image", ".png.", 5), ("results.json", "results", 0)])
def test_a_full_disk_stops_the_run_cleanly_and_it_resumes(where: str, name_part: str, writes: int, tmp_path: Path,
                                                           uninterrupted: Path, tiny_models,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the file being synced")
    spec = _spec(tmp_path, tiny_models)
    _full_disk_after(writes, monkeypatch, name_part)
    result = CliRunner().invoke(app, ["run", str(spec)])
    monkeypatch.undo()
    message = result.output.replace("\n", "")
    assert result.exit_code == 2, result.output
    assert "no space left on the device while writing it" in message and "Traceback" not in message
    assert "Free space on that disk (or use another --store) and run the same command again" in message
    store = tmp_path / "store"
    assert str(store) in message
    images, _ = images_and_scores(store)
    assert len(images) == (5 if where == "an image" else 8)
    assert leftovers(store) == []  # no temporary, no orphan, no run left 'running'
    assert sqlite3.connect(store / "ckptbench.sqlite").execute("PRAGMA integrity_check").fetchone() == ("ok",)

    resumed = CliRunner().invoke(app, ["run", str(spec)])
    assert resumed.exit_code == 0, resumed.output
    assert images_and_scores(store) == images_and_scores(uninterrupted)


def test_a_full_disk_leaves_the_previous_file_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "results.json"
    target.write_text("old")

    def no_space(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(DiskFullError, match=r"results.json: no space left on the device"):
        atomic_write_bytes(target, b"new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]
