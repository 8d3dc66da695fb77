"""Cleaning up after a run that was killed: run when a new run takes the store's lock.

What a kill can leave, given how the store writes (every file atomically, then its row; every
multi-row update in one transaction):

* temporary files of atomic writes that never reached their rename — deleted;
* image files whose row was never inserted (killed between the rename and the insert) — deleted, not
  adopted: an image key hashes the inputs, not the pixels, so a file cannot prove it is what those
  inputs make, and its row (settings, seconds) cannot be rebuilt from it; the runner remakes it with
  the rest of its batch;
* runs still marked 'running' — marked 'interrupted' (the lock proves their process is gone).

A row whose file is missing or empty cannot come from a kill (the file is synced before the row is
written) but from a file deleted or damaged by hand; its row, scores and cached features are dropped
so the image is made and scored again rather than reported from a file that is not there.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ckptbench.atomic import remove_stale_temporaries


class RecoverableStore(Protocol):
    """What recovery needs of a store: its folders and one transaction (the store module imports this one)."""

    root: Path
    images_dir: Path

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]: ...


@dataclass
class Recovery:
    temporaries: int = 0  # temporary files of interrupted atomic writes, deleted
    orphan_images: int = 0  # image files without a row, deleted
    missing_images: int = 0  # image rows whose file is missing or empty, dropped with their scores
    interrupted_runs: list[int] = field(default_factory=list)  # runs found 'running', now 'interrupted'

    def describe(self) -> str:
        """One line for the console, or '' when there was nothing to clean up."""
        parts = []
        if self.interrupted_runs:
            runs = ", ".join(str(run) for run in self.interrupted_runs)
            parts.append(f"run{'s' if len(self.interrupted_runs) > 1 else ''} {runs} had been interrupted")
        if self.temporaries:
            parts.append(f"removed {self.temporaries} unfinished temporary file(s)")
        if self.orphan_images:
            parts.append(f"removed {self.orphan_images} image file(s) saved without their record (remade now)")
        if self.missing_images:
            parts.append(f"{self.missing_images} recorded image(s) had no file or an empty one (made again)")
        return "; ".join(parts)


def recover_store(store: RecoverableStore) -> Recovery:
    """Bring the store back to a consistent state; call only while holding the store's run lock."""
    recovery = Recovery(temporaries=remove_stale_temporaries(store.root))
    files = dict(_image_files(store.images_dir, store.root))
    with store.transaction() as db:
        rows = dict(db.execute("SELECT key, path FROM images").fetchall())
        missing = [key for key, path in rows.items() if files.get(path, 0) == 0]
        for start in range(0, len(missing), 500):
            chunk = missing[start : start + 500]
            marks = ",".join("?" * len(chunk))
            db.execute(f"DELETE FROM images WHERE key IN ({marks})", chunk)
            db.execute(f"DELETE FROM scores WHERE image_key IN ({marks})", chunk)
            db.execute(f"DELETE FROM embeddings WHERE image_key IN ({marks})", chunk)
        recovery.missing_images = len(missing)
        recovery.interrupted_runs = [row[0] for row in db.execute(
            "SELECT run_id FROM runs WHERE status = 'running' ORDER BY run_id").fetchall()]
        db.execute("UPDATE runs SET status = 'interrupted' WHERE status = 'running'")
    recorded = set(rows.values())
    for path in files:
        if path not in recorded:
            (store.root / path).unlink(missing_ok=True)
            recovery.orphan_images += 1
    # A recorded image whose file was empty is deleted too, so the remade one is written fresh.
    for key in missing:
        if files.get(rows[key]) == 0:
            (store.root / rows[key]).unlink(missing_ok=True)
    return recovery


def _image_files(images_dir: Path, root: Path) -> Iterator[tuple[str, int]]:
    """(path relative to the store, size) of every PNG in the store's two-level image layout."""
    if not images_dir.is_dir():
        return
    for folder in os.scandir(images_dir):
        if not folder.is_dir():
            continue
        for entry in os.scandir(folder.path):
            if entry.name.endswith(".png") and entry.is_file() and not entry.name.startswith("."):
                yield str(Path(entry.path).relative_to(root)), entry.stat().st_size
