"""Weights are hashed once per file per machine: the machine digest cache outlives stores and processes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from ckptbench import hashing
from ckptbench.hashing import sha256_file


@pytest.fixture
def machine_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("CKPTBENCH_CACHE_DIR", str(folder))
    monkeypatch.setattr(hashing, "MACHINE_CACHE_MIN_BYTES", 1024)
    monkeypatch.setattr(hashing, "_memory_cache", {})
    return folder


def _forget_this_process() -> None:
    """What a new process starts with: no digests in memory."""
    hashing._memory_cache.clear()


def test_a_large_file_is_read_once_per_machine(machine_cache: Path, tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"a" * 4096)
    stamp = weights.stat().st_mtime_ns
    first = sha256_file(weights)  # no store: `ckptbench score` with a fresh temporary store
    assert first == hashlib.sha256(b"a" * 4096).hexdigest()
    assert (machine_cache / "digests.sqlite").is_file()

    # Same path, size and time but other bytes: only a cache hit can still answer the old digest, so this
    # shows the file was not read again.
    weights.write_bytes(b"b" * 4096)
    os.utime(weights, ns=(stamp, stamp))
    _forget_this_process()
    assert sha256_file(weights) == first

    # A changed modification time is a changed file: read again.
    os.utime(weights, ns=(stamp + 1_000_000_000, stamp + 1_000_000_000))
    _forget_this_process()
    assert sha256_file(weights) == hashlib.sha256(b"b" * 4096).hexdigest()


def test_small_files_stay_out_of_the_machine_cache(machine_cache: Path, tmp_path: Path) -> None:
    image = tmp_path / "image.png"
    image.write_bytes(b"x" * 100)
    sha256_file(image)
    stamp = image.stat().st_mtime_ns
    image.write_bytes(b"y" * 100)
    os.utime(image, ns=(stamp, stamp))
    _forget_this_process()
    assert sha256_file(image) == hashlib.sha256(b"y" * 100).hexdigest()


def test_an_unwritable_cache_folder_only_costs_the_hash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    monkeypatch.setenv("CKPTBENCH_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.setattr(hashing, "MACHINE_CACHE_MIN_BYTES", 1024)
    monkeypatch.setattr(hashing, "_memory_cache", {})
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"c" * 2048)
    assert sha256_file(weights) == hashlib.sha256(b"c" * 2048).hexdigest()
