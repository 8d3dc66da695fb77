"""Atomic file writes: a reader (or a crash) never sees a half-written file."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from ckptbench.errors import DiskFullError

_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync it, then rename it over ``path``.

    A full disk raises ``DiskFullError`` (one sentence: which file, and what to do) after removing the
    temporary file, so the old ``path``, if any, is left as it was.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise _disk_full(path, error) from None
    try:
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in _NO_SPACE:
            raise _disk_full(path, error) from None
        raise
    _fsync_folder(path.parent)


def _disk_full(path: Path, error: OSError) -> OSError | DiskFullError:
    """``DiskFullError`` for a full disk or quota; any other OSError as it was."""
    if error.errno not in _NO_SPACE:
        return error
    return DiskFullError(f"{path}: no space left on the device while writing it ({os.strerror(error.errno)}); "
                         "nothing was half-written. Free space on that disk (or use another --store) and run "
                         "the same command again: a run resumes from what it saved.")


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself durable; not every platform allows opening a folder.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def remove_stale_temporaries(folder: Path) -> int:
    """Delete temporary files left by writes that a crash interrupted; return how many."""
    removed = 0
    if folder.is_dir():
        for stale in folder.rglob(".*.tmp"):
            stale.unlink(missing_ok=True)
            removed += 1
    return removed
