"""The store's SQLite tables: their definition, the columns added to them since schema 1, and the checks made
when a store is opened (``Store`` in ``store.py`` holds the operations on them)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ckptbench.errors import StoreError

SCHEMA_VERSION = 1
DATABASE_NAME = "ckptbench.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS file_digests (
    path TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL,
    PRIMARY KEY (path, size, mtime_ns));
CREATE TABLE IF NOT EXISTS images (
    key TEXT PRIMARY KEY, checkpoint_sha256 TEXT NOT NULL, prompt TEXT NOT NULL, negative_prompt TEXT NOT NULL,
    seed INTEGER NOT NULL, settings_json TEXT NOT NULL, backend TEXT NOT NULL, path TEXT NOT NULL,
    infotext TEXT NOT NULL, seconds REAL, created_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS scorers (scorer_key TEXT PRIMARY KEY, name TEXT NOT NULL, info_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
    image_key TEXT NOT NULL, scorer_key TEXT NOT NULL, context_key TEXT NOT NULL, value REAL NOT NULL,
    created_at REAL NOT NULL, PRIMARY KEY (image_key, scorer_key, context_key));
CREATE TABLE IF NOT EXISTS embeddings (
    image_key TEXT NOT NULL, backbone_key TEXT NOT NULL, vector BLOB NOT NULL,
    PRIMARY KEY (image_key, backbone_key));
CREATE TABLE IF NOT EXISTS reference_summaries (
    set_key TEXT NOT NULL, scorer_key TEXT NOT NULL, arrays BLOB NOT NULL, PRIMARY KEY (set_key, scorer_key));
CREATE TABLE IF NOT EXISTS set_scores (
    scorer_key TEXT NOT NULL, set_key TEXT NOT NULL, value REAL NOT NULL, images INTEGER NOT NULL,
    references_count INTEGER NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (scorer_key, set_key));
CREATE TABLE IF NOT EXISTS runs (
    run_id INTEGER PRIMARY KEY AUTOINCREMENT, started_at REAL NOT NULL, finished_at REAL,
    status TEXT NOT NULL, spec_json TEXT NOT NULL, provenance_json TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS run_items (
    run_id INTEGER NOT NULL, item INTEGER NOT NULL, checkpoint TEXT NOT NULL, suite TEXT NOT NULL,
    case_id TEXT NOT NULL, prompt TEXT NOT NULL, seed INTEGER NOT NULL, image_key TEXT NOT NULL,
    variant TEXT NOT NULL DEFAULT '', PRIMARY KEY (run_id, item));
CREATE TABLE IF NOT EXISTS run_scores (
    run_id INTEGER NOT NULL, item INTEGER NOT NULL, scorer TEXT NOT NULL, scorer_key TEXT NOT NULL,
    context_key TEXT NOT NULL, PRIMARY KEY (run_id, item, scorer));
CREATE TABLE IF NOT EXISTS run_sets (
    run_id INTEGER NOT NULL, checkpoint TEXT NOT NULL, suite TEXT NOT NULL, scorer TEXT NOT NULL,
    scorer_key TEXT NOT NULL, set_key TEXT NOT NULL, PRIMARY KEY (run_id, checkpoint, suite, scorer));
CREATE TABLE IF NOT EXISTS run_checkpoints (
    run_id INTEGER NOT NULL, name TEXT NOT NULL, source TEXT NOT NULL, sha256 TEXT, status TEXT NOT NULL,
    error TEXT, PRIMARY KEY (run_id, name));
CREATE TABLE IF NOT EXISTS run_failures (
    run_id INTEGER NOT NULL, scope TEXT NOT NULL, checkpoint TEXT, image_key TEXT, scorer TEXT,
    message TEXT NOT NULL, suite TEXT, case_id TEXT);
CREATE TABLE IF NOT EXISTS run_cases (
    run_id INTEGER NOT NULL, suite TEXT NOT NULL, case_id TEXT NOT NULL, case_json TEXT NOT NULL,
    PRIMARY KEY (run_id, suite, case_id));
CREATE TABLE IF NOT EXISTS throughput (
    run_id INTEGER NOT NULL, stage TEXT NOT NULL, workload TEXT NOT NULL, device_kind TEXT NOT NULL,
    device_name TEXT NOT NULL, executor TEXT NOT NULL, items INTEGER NOT NULL, units REAL NOT NULL,
    seconds REAL NOT NULL, fixed_seconds REAL NOT NULL, tasks INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS run_items_by_image ON run_items (image_key);
"""

# Columns added to a table after schema 1 was released, with their type: added to older stores when a run
# opens them (old rows get the default; a read-only store without them reads them as empty).
ADDED_COLUMNS = {"run_failures": (("suite", "TEXT"), ("case_id", "TEXT")),
                 "run_items": (("variant", "TEXT NOT NULL DEFAULT ''"),)}


def create_tables(db: sqlite3.Connection) -> None:
    """Every table of a writable store, with the columns added since it was made."""
    db.executescript(SCHEMA)
    for table, columns in ADDED_COLUMNS.items():
        for name, kind in columns:
            if not has_column(db, table, name):
                db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")


def check_schema_version(db: sqlite3.Connection, root: Path, read_only: bool) -> None:
    """Record the schema version in a new store; refuse a store of another version."""
    row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
    if row is None and read_only:
        raise StoreError(f"{root}: this store records no schema version; run `ckptbench run` on it first.")
    if row is None:
        db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
    elif int(row[0]) != SCHEMA_VERSION:
        raise StoreError(f"{root}: store schema {row[0]} is not the {SCHEMA_VERSION} this ckptbench reads; use a "
                         "ckptbench version that matches, or a new --store.")


def has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))
