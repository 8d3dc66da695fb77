"""Messages for a store this process cannot write to: a folder it cannot create, or an existing store
whose files are read-only (which is not a broken store, and must not be called one)."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path


def read_only_error(error: sqlite3.DatabaseError) -> bool:
    return "readonly" in str(error).replace(" ", "").lower() or "unable to open" in str(error).lower()


def unwritable_message(root: Path, database_name: str, error: OSError | sqlite3.DatabaseError) -> str:
    """One sentence for a store this process cannot write to: a folder it cannot create, or an existing
    store whose files are read-only (which is not a broken store: ``report --out`` can still read it)."""
    reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
    if (root / database_name).is_file():
        return (f"{root}: this ckptbench store cannot be written to ({reason}); a run needs write access to "
                "its folder and files. Fix the permissions, choose another --store, or read it without "
                f"writing: `ckptbench report --store {root} --out DIR`.")
    return (f"{root}: cannot create or write the store folder here ({reason}); choose a --store (or "
            "[benchmark] store) in a folder you can write to.")


def check_writable(root: Path, database_name: str) -> None:
    """Raise ``PermissionError`` when the store folder or its database cannot be written (SQLite would open a
    read-only file for reading and fail only at the first write, deep inside a run)."""
    for path in (root, root / database_name):
        if path.exists() and not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES, "permission denied", str(path))
