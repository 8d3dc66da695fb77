"""Votes are data: the store's ``arena_pairs`` and ``votes`` tables, written one transaction per vote.

A pair is recorded when the arena issues it (a random token, the two image keys, which side is which
checkpoint); a vote names only the token and the choice, so the server accepts votes for pairs it issued
and for each of them once (the token is the vote's primary key). Votes live in the store's own SQLite
database under WAL: a run, a report and several arena servers can use the store at the same time.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from ckptbench.errors import CkptbenchError, StoreError
from ckptbench.store import DATABASE_NAME

Choice = Literal["left", "right", "tie", "both_bad"]
CHOICES: tuple[Choice, ...] = ("left", "right", "tie", "both_bad")
UI_VERSION = "arena/1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS arena_pairs (
    token TEXT PRIMARY KEY, rater TEXT NOT NULL, run_id INTEGER NOT NULL, suite TEXT NOT NULL,
    case_id TEXT NOT NULL, prompt TEXT NOT NULL, seed INTEGER NOT NULL, left_key TEXT NOT NULL,
    right_key TEXT NOT NULL, left_checkpoint TEXT NOT NULL, right_checkpoint TEXT NOT NULL, issued_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS votes (
    token TEXT PRIMARY KEY, rater TEXT NOT NULL, run_id INTEGER NOT NULL, suite TEXT NOT NULL,
    case_id TEXT NOT NULL, prompt TEXT NOT NULL, seed INTEGER NOT NULL, left_key TEXT NOT NULL,
    right_key TEXT NOT NULL, left_checkpoint TEXT NOT NULL, right_checkpoint TEXT NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('left', 'right', 'tie', 'both_bad')),
    issued_at REAL NOT NULL, voted_at REAL NOT NULL, ui_version TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS votes_by_rater ON votes (rater);
"""

VOTE_COLUMNS = ("token", "rater", "run_id", "suite", "case_id", "prompt", "seed", "left_key", "right_key",
                "left_checkpoint", "right_checkpoint", "choice", "issued_at", "voted_at", "ui_version")


class VoteError(CkptbenchError):
    """A vote the arena refuses; ``status`` is the HTTP status the server answers with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class IssuedPair:
    token: str
    rater: str
    run_id: int
    suite: str
    case_id: str
    prompt: str
    seed: int
    left_key: str
    right_key: str
    left_checkpoint: str
    right_checkpoint: str
    issued_at: float


def new_token() -> str:
    """128 random bits: a pair token cannot be guessed, so only pairs the server issued can be voted on."""
    return secrets.token_urlsafe(16)


class VoteBook:
    """The arena's connection to a store's database (thread-safe: one lock around every statement)."""

    def __init__(self, root: Path) -> None:
        path = Path(root) / DATABASE_NAME
        if not path.is_file():
            raise StoreError(f"{root}: no ckptbench store here; run `ckptbench run SPEC.toml` first, or give "
                             "the store folder with --store.")
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # as the store: a commit survives a crash of this process
            self._db.executescript(_SCHEMA)
        except sqlite3.OperationalError as error:
            raise StoreError(f"{path}: cannot record votes in this store ({error}); check that the folder is "
                             "writable, or copy the store somewhere writable.") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def issue(self, pair: IssuedPair) -> None:
        row = asdict(pair)
        with self._lock:
            self._db.execute(f"INSERT INTO arena_pairs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                             tuple(row.values()))

    def pair(self, token: str) -> IssuedPair | None:
        with self._lock:
            row = self._db.execute(f"SELECT {', '.join(IssuedPair.__dataclass_fields__)} FROM arena_pairs "
                                   "WHERE token = ?", (token,)).fetchone()
        return IssuedPair(*row) if row else None

    def shown_since(self, rater: str, since: float) -> list[tuple[str, str]]:
        """Image-key pairs issued to ``rater`` since ``since`` and not voted on (shown, or waiting preloaded)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT p.left_key, p.right_key FROM arena_pairs p LEFT JOIN votes v ON v.token = p.token "
                "WHERE p.rater = ? AND p.issued_at >= ? AND v.token IS NULL", (rater, since)).fetchall()
        return [(str(left), str(right)) for left, right in rows]

    def record(self, token: str, choice: str) -> dict[str, object]:
        """Store the vote on an issued pair, once; the vote row is committed before this returns."""
        if choice not in CHOICES:
            raise VoteError(f"choice must be one of {', '.join(CHOICES)}.", 400)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                pair = self._db.execute(f"SELECT {', '.join(IssuedPair.__dataclass_fields__)} FROM arena_pairs "
                                        "WHERE token = ?", (token,)).fetchone()
                if pair is None:
                    raise VoteError("this pair was not issued by this arena.", 403)
                if self._db.execute("SELECT 1 FROM votes WHERE token = ?", (token,)).fetchone():
                    raise VoteError("this pair has already been voted on.", 409)
                issued = IssuedPair(*pair)
                vote = {**asdict(issued), "choice": choice, "voted_at": time.time(), "ui_version": UI_VERSION}
                values = tuple(vote[column] for column in VOTE_COLUMNS)
                self._db.execute(f"INSERT INTO votes ({', '.join(VOTE_COLUMNS)}) "
                                 f"VALUES ({', '.join('?' * len(VOTE_COLUMNS))})", values)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return vote

    def votes(self) -> list[dict[str, object]]:
        with self._lock:
            return _vote_rows(self._db)


def _vote_rows(db: sqlite3.Connection) -> list[dict[str, object]]:
    rows = db.execute(f"SELECT {', '.join(VOTE_COLUMNS)} FROM votes ORDER BY voted_at, token").fetchall()
    return [dict(zip(VOTE_COLUMNS, row, strict=True)) for row in rows]


def read_votes(root: Path) -> list[dict[str, object]]:
    """Every vote in a store (read-only, safe while a run or an arena writes); [] when there are none."""
    path = Path(root) / DATABASE_NAME
    if not path.is_file():
        return []
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30.0)
    try:
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'votes'").fetchone() is None:
            return []
        return _vote_rows(db)
    finally:
        db.close()


def export_votes(root: Path, out: Path) -> int:
    """Write the store's votes to ``out`` (``.csv`` or ``.parquet``, by its suffix); returns how many."""
    import pandas as pd

    from ckptbench.atomic import atomic_write_bytes

    frame = pd.DataFrame(read_votes(root), columns=list(VOTE_COLUMNS))
    if out.suffix == ".parquet":
        import io

        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        atomic_write_bytes(out, buffer.getvalue())
    elif out.suffix == ".csv":
        atomic_write_bytes(out, frame.to_csv(index=False).encode())
    else:
        raise CkptbenchError(f"{out}: give a file name ending in .csv or .parquet for the votes.")
    return len(frame)
