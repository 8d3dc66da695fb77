"""Content hashes: file digests (cached by path, size and mtime) and canonical keys of plain data."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

_CHUNK = 8 * 1024 * 1024

# A file's digest is looked up by (resolved path, size, mtime_ns) before it is read again: hashing a
# 2-7 GB checkpoint takes seconds, and a run touches every checkpoint on each start.
_memory_cache: dict[tuple[str, int, int], str] = {}

# Files at least this large (model weights, not images) are also remembered in a cache shared by every
# store and every process of this user on this machine, so `ckptbench score` with a fresh store, or a new
# store, does not read a 1.7 GB CLIP again.
MACHINE_CACHE_MIN_BYTES = 16 * 1024 * 1024


class DigestCache(Protocol):
    """A persistent cache of file digests (the store implements it)."""

    def lookup_digest(self, ident: tuple[str, int, int]) -> str | None: ...

    def remember_digest(self, ident: tuple[str, int, int], digest: str) -> None: ...


class MachineDigests:
    """The per-user, per-machine digest cache: a small SQLite file in the user's cache folder
    (``$CKPTBENCH_CACHE_DIR``, else ``$XDG_CACHE_HOME/ckptbench``, else ``~/.cache/ckptbench``).

    It is a cache: when the folder cannot be written, digests are simply computed again."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "digests.sqlite"
        self._db: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection | None:
        if self._db is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None, check_same_thread=False)
                self._db.execute("CREATE TABLE IF NOT EXISTS file_digests (path TEXT, size INTEGER, mtime_ns INTEGER, "
                                 "sha256 TEXT NOT NULL, PRIMARY KEY (path, size, mtime_ns))")
            except (OSError, sqlite3.Error):
                return None
        return self._db

    def lookup_digest(self, ident: tuple[str, int, int]) -> str | None:
        db = self._connection()
        try:
            row = db.execute("SELECT sha256 FROM file_digests WHERE path=? AND size=? AND mtime_ns=?",
                             ident).fetchone() if db else None
        except sqlite3.Error:
            return None
        return row[0] if row else None

    def remember_digest(self, ident: tuple[str, int, int], digest: str) -> None:
        db = self._connection()
        if db is None:
            return
        try:
            # A file at this path with another size or time is stale: keep one row per path.
            db.execute("DELETE FROM file_digests WHERE path=?", (ident[0],))
            db.execute("INSERT OR REPLACE INTO file_digests VALUES (?, ?, ?, ?)", (*ident, digest))
        except sqlite3.Error:
            pass


def cache_folder() -> Path:
    """ckptbench's per-user cache folder on this machine."""
    if os.environ.get("CKPTBENCH_CACHE_DIR"):
        return Path(os.environ["CKPTBENCH_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ckptbench"


@functools.cache
def machine_digests(folder: Path) -> MachineDigests:
    return MachineDigests(folder)


def sha256_file(path: Path, cache: DigestCache | None = None) -> str:
    """Full sha256 of a file, looked up in memory, in ``cache`` and (for large files) in the machine's digest
    cache before it is read."""
    path = Path(path).resolve()
    stat = path.stat()
    ident = (str(path), stat.st_size, stat.st_mtime_ns)
    if ident in _memory_cache:
        return _memory_cache[ident]
    caches: list[DigestCache] = [cache] if cache else []
    if stat.st_size >= MACHINE_CACHE_MIN_BYTES:
        caches.append(machine_digests(cache_folder()))
    digest = next((found for c in caches if (found := c.lookup_digest(ident)) is not None), None)
    if digest is None:
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
        digest = hasher.hexdigest()
    for known in caches:
        if known.lookup_digest(ident) != digest:
            known.remember_digest(ident, digest)
    _memory_cache[ident] = digest
    return digest


def addnet_sha256(path: Path, cache: DigestCache | None = None) -> str:
    """sha256 of a safetensors file's tensor data, everything after its header: kohya's "addnet" hash, which
    A1111 writes for LoRAs (``Lora hashes``) and Civitai matches as AutoV3. Metadata edits do not change it."""
    path = Path(path).resolve()
    stat = path.stat()
    # The digest cache is keyed by path: the addnet hash is kept under a name no resolved path has.
    ident = (f"addnet:{path}", stat.st_size, stat.st_mtime_ns)
    if ident in _memory_cache:
        return _memory_cache[ident]
    digest = cache.lookup_digest(ident) if cache else None
    if digest is None:
        hasher = hashlib.sha256()
        with path.open("rb") as handle:
            handle.seek(8 + int.from_bytes(handle.read(8), "little"))
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
        digest = hasher.hexdigest()
        if cache:
            cache.remember_digest(ident, digest)
    _memory_cache[ident] = digest
    return digest


def autov2(sha256: str) -> str:
    """Civitai's short "AutoV2" hash: the first 10 hex digits of the file's sha256."""
    return sha256[:10].upper()


def tree_sha256(files: Iterable[tuple[str, str]]) -> str:
    """Digest of a set of (relative path, file sha256) pairs, independent of listing order."""
    hasher = hashlib.sha256()
    for relative, digest in sorted(files):
        hasher.update(f"{relative}\0{digest}\n".encode())
    return hasher.hexdigest()


def canonical_json(data: Any) -> str:
    """JSON with sorted keys and no whitespace, so equal data always hashes equally."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def content_key(data: Any) -> str:
    """sha256 hex of the canonical JSON of ``data``."""
    return hashlib.sha256(canonical_json(data).encode()).hexdigest()


def relative_files(root: Path, suffixes: tuple[str, ...]) -> list[Path]:
    """Files under ``root`` with one of ``suffixes``, sorted, skipping hidden folders like ``.cache``."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / name for name in sorted(filenames) if name.endswith(suffixes))
    return found
