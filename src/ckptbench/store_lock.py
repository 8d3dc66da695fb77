"""One run per store: an advisory lock on ``run.lock`` that names its holder's pid.

The lock is ``flock``'s, so the kernel releases it when the holder dies, however it dies; a lock
file left by a killed run never blocks the next one.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ckptbench.errors import StoreError

LOCK_NAME = "run.lock"


@contextmanager
def run_lock(root: Path) -> Iterator[None]:
    """Hold the store's run lock; raise ``StoreError`` naming the holder's pid if another process has it."""
    handle = (root / LOCK_NAME).open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise StoreError(f"{root}: another ckptbench run (pid {holder}) is using this store; wait for it to "
                         "finish or use another --store.") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    try:
        yield
    finally:
        handle.seek(0)
        handle.truncate()
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def lock_holder(root: Path) -> str | None:
    """The pid of the process holding the store's run lock, or None when none holds it."""
    path = root / LOCK_NAME
    if not path.is_file():
        return None
    with path.open("r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "unknown"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None
