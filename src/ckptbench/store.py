"""The result store: SQLite (WAL) for keys, metadata and scores; PNG files addressed by content key.

The store is a content-addressed cache (an image is known by the hash of everything that changes its
pixels; a score by image, scorer version and weights, and scoring context) plus a record of runs: which
(checkpoint, suite, case, seed) cells a run asked for and which image and scores answer each. Results
and reports are always built from a run's record, so the cache may hold more than any one run uses.
"""

from __future__ import annotations

import io
import json
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from ckptbench.atomic import atomic_write_bytes
from ckptbench.errors import StoreError
from ckptbench.store_access import check_writable, read_only_error, unwritable_message
from ckptbench.store_lock import lock_holder, run_lock
from ckptbench.store_recovery import Recovery, recover_store
from ckptbench.store_schema import DATABASE_NAME, check_schema_version, create_tables, has_column

if TYPE_CHECKING:  # pandas is imported by the queries that answer with a table, not by opening a store
    import pandas as pd

_RUN_ITEM_COLUMNS = ("item", "checkpoint", "suite", "case_id", "prompt", "seed", "image_key", "image", "variant")

@dataclass(frozen=True)
class Throughput:
    """Measured cost of one stage of a run on one kind of device, for the next dry run's estimate.

    ``units`` is the stage's measure of work (generation: sampling steps × megapixels; scoring: images through
    a backbone), ``seconds`` the time spent on them and ``fixed_seconds`` the time spent per task besides
    (loading a checkpoint or a backbone), over ``tasks`` tasks.
    """

    stage: str  # "generate" or "score"
    workload: str  # generation: the model family and dtype; scoring: the backbone and dtype
    device_kind: str  # "cuda", "cpu", "mps"
    device_name: str  # e.g. "NVIDIA H100 80GB HBM3"
    executor: str
    items: int
    units: float
    seconds: float
    fixed_seconds: float
    tasks: int


def encode_png(image: Image.Image, infotext: str) -> bytes:
    """The PNG file of an image with its A1111 infotext, as the store keeps it."""
    info = PngInfo()
    info.add_text("parameters", infotext)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


@dataclass(frozen=True)
class RunItem:
    checkpoint: str
    suite: str
    case_id: str
    prompt: str
    seed: int
    image_key: str
    variant: str = ""  # the sweep variant ("cfg=7"); "" when the run sweeps nothing


class Store:
    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        """``read_only``: open an existing store for reading only (``ckptbench report``), which is safe while a
        run writes to it: under WAL a reader sees the last committed state and never blocks the writer."""
        self.root = Path(root)
        self.images_dir = self.root / "images"
        self.recovered = Recovery()  # what the last exclusive() start cleaned up after an interrupted run
        try:
            if read_only:
                self._db = sqlite3.connect(f"{(self.root / DATABASE_NAME).resolve().as_uri()}?mode=ro", uri=True,
                                           timeout=30.0, isolation_level=None)
            else:
                self.root.mkdir(parents=True, exist_ok=True)
                check_writable(self.root, DATABASE_NAME)
                self._db = sqlite3.connect(self.root / DATABASE_NAME, timeout=30.0, isolation_level=None)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                create_tables(self._db)
                # A write that changes nothing: SQLite opens a read-only file without complaint and would
                # fail only at the first real write, deep inside a run.
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                self._db.execute(f"PRAGMA user_version = {int(version)}")
            check_schema_version(self._db, self.root, read_only)
            # A store written before sweeps existed has no variant column; reading it, every item is ''.
            self._variant = "ri.variant" if has_column(self._db, "run_items", "variant") else "''"
        except OSError as error:
            raise StoreError(unwritable_message(self.root, DATABASE_NAME, error)) from None
        except sqlite3.DatabaseError as error:
            if not read_only and read_only_error(error):
                raise StoreError(unwritable_message(self.root, DATABASE_NAME, error)) from None
            raise StoreError(f"{self.root / DATABASE_NAME}: not a usable ckptbench store ({error}); "
                             "move it away or choose another --store.") from None

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """All writes inside commit together or not at all; nested use joins the outer transaction, so a
        caller can make several store updates (a scoring chunk's features and scores) one unit."""
        if self._db.in_transaction:
            yield self._db
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    # --- exclusive use -------------------------------------------------------------------------------

    def lock_holder(self) -> str | None:
        """The pid of the run holding this store's run lock, or None when no run holds it."""
        return lock_holder(self.root)

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store's run lock (a second run is refused with the holder's pid), after cleaning up
        whatever a killed run left behind (see store_recovery)."""
        with run_lock(self.root):
            self.recovered = recover_store(self)
            yield

    # --- file digests (hashing.DigestCache) -----------------------------------------------------------

    def lookup_digest(self, ident: tuple[str, int, int]) -> str | None:
        row = self._db.execute("SELECT sha256 FROM file_digests WHERE path=? AND size=? AND mtime_ns=?",
                               ident).fetchone()
        return row[0] if row else None

    def remember_digest(self, ident: tuple[str, int, int], digest: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO file_digests VALUES (?, ?, ?, ?)", (*ident, digest))

    # --- images --------------------------------------------------------------------------------------

    def image_file(self, key: str) -> Path:
        return self.images_dir / key[:2] / f"{key}.png"

    def existing_images(self, keys: Iterable[str]) -> set[str]:
        return set(self._select_in("SELECT key FROM images WHERE key IN ({})", list(keys)))

    def put_image(self, key: str, image: Image.Image, infotext: str, *, checkpoint_sha256: str, prompt: str,
                  negative_prompt: str, seed: int, settings: dict[str, object], backend: str,
                  seconds: float | None) -> Path:
        """Write the PNG (with its A1111 infotext) atomically, then record it."""
        return self.put_image_png(key, encode_png(image, infotext), infotext, checkpoint_sha256=checkpoint_sha256,
                                  prompt=prompt, negative_prompt=negative_prompt, seed=seed, settings=settings,
                                  backend=backend, seconds=seconds)

    def put_image_png(self, key: str, png: bytes, infotext: str, *, checkpoint_sha256: str, prompt: str,
                      negative_prompt: str, seed: int, settings: dict[str, object], backend: str,
                      seconds: float | None) -> Path:
        """Write an encoded PNG (made by ``encode_png``, here or in a worker) atomically, then record it."""
        path = self.image_file(key)
        atomic_write_bytes(path, png)
        self._db.execute(
            "INSERT OR REPLACE INTO images VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (key, checkpoint_sha256, prompt, negative_prompt, seed, json.dumps(settings, sort_keys=True),
             backend, str(path.relative_to(self.root)), infotext, seconds, time.time()),
        )
        return path

    def image_infotexts(self, keys: Sequence[str]) -> dict[str, str]:
        """image key → the A1111 infotext its PNG carries (read from the database, not the files)."""
        rows = self._select_rows("SELECT key, infotext FROM images WHERE key IN ({})", list(keys))
        return {row[0]: row[1] for row in rows}

    # --- scorers, scores, embeddings -----------------------------------------------------------------

    def put_scorer(self, scorer_key: str, name: str, info: dict[str, object]) -> None:
        self._db.execute("INSERT OR REPLACE INTO scorers VALUES (?, ?, ?)",
                         (scorer_key, name, json.dumps(info, sort_keys=True)))

    def scorer_infos(self, scorer_keys: Iterable[str]) -> dict[str, dict[str, object]]:
        rows = self._select_rows("SELECT scorer_key, info_json FROM scorers WHERE scorer_key IN ({})",
                                 list(scorer_keys))
        return {row[0]: json.loads(row[1]) for row in rows}

    def existing_scores(self, scorer_key: str, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (image_key, context_key) pairs already have a score from ``scorer_key``."""
        rows = self._select_rows("SELECT image_key, context_key FROM scores WHERE scorer_key = ? AND "
                                 "image_key IN ({})", sorted({image for image, _ in pairs}), prefix=(scorer_key,))
        return {(row[0], row[1]) for row in rows} & set(pairs)

    def score_values(self, scorer_key: str, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], float]:
        """The stored values of the (image_key, context_key) pairs that have one."""
        wanted = set(pairs)
        rows = self._select_rows("SELECT image_key, context_key, value FROM scores WHERE scorer_key = ? AND "
                                 "image_key IN ({})", sorted({image for image, _ in pairs}), prefix=(scorer_key,))
        return {(row[0], row[1]): float(row[2]) for row in rows if (row[0], row[1]) in wanted}

    def put_scores(self, scorer_key: str, rows: Sequence[tuple[str, str, float]]) -> None:
        now = time.time()
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?, ?)",
                           [(image, scorer_key, context, float(value), now) for image, context, value in rows])

    def embeddings(self, backbone_key: str, image_keys: Sequence[str]) -> dict[str, np.ndarray]:
        rows = self._select_rows("SELECT image_key, vector FROM embeddings WHERE backbone_key = ? AND "
                                 "image_key IN ({})", list(image_keys), prefix=(backbone_key,))
        return {row[0]: np.frombuffer(row[1], dtype=np.float32).copy() for row in rows}

    def put_embeddings(self, backbone_key: str, vectors: dict[str, np.ndarray]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO embeddings VALUES (?, ?, ?)",
                           [(key, backbone_key, np.asarray(v, dtype=np.float32).tobytes())
                            for key, v in vectors.items()])

    def reference_summary(self, set_key: str, scorer_key: str) -> dict[str, np.ndarray] | None:
        row = self._db.execute("SELECT arrays FROM reference_summaries WHERE set_key = ? AND scorer_key = ?",
                               (set_key, scorer_key)).fetchone()
        if row is None:
            return None
        with np.load(io.BytesIO(row[0]), allow_pickle=False) as arrays:
            return {name: arrays[name] for name in arrays.files}

    def put_reference_summary(self, set_key: str, scorer_key: str, arrays: dict[str, np.ndarray]) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        self._db.execute("INSERT OR REPLACE INTO reference_summaries VALUES (?, ?, ?)",
                         (set_key, scorer_key, buffer.getvalue()))

    def existing_set_scores(self, scorer_key: str, set_keys: Sequence[str]) -> set[str]:
        rows = self._select_rows("SELECT set_key FROM set_scores WHERE scorer_key = ? AND set_key IN ({})",
                                 list(set_keys), prefix=(scorer_key,))
        return {row[0] for row in rows}

    def set_score(self, scorer_key: str, set_key: str) -> float | None:
        row = self._db.execute("SELECT value FROM set_scores WHERE scorer_key = ? AND set_key = ?",
                               (scorer_key, set_key)).fetchone()
        return None if row is None else float(row[0])

    def put_set_score(self, scorer_key: str, set_key: str, value: float, images: int, references: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO set_scores VALUES (?, ?, ?, ?, ?, ?)",
                         (scorer_key, set_key, float(value), images, references, time.time()))

    # --- runs ----------------------------------------------------------------------------------------

    def start_run(self, spec: dict[str, object], provenance: dict[str, object]) -> int:
        cursor = self._db.execute(
            "INSERT INTO runs (started_at, status, spec_json, provenance_json) VALUES (?, 'running', ?, ?)",
            (time.time(), json.dumps(spec, sort_keys=True, default=str), json.dumps(provenance, sort_keys=True)))
        return int(cursor.lastrowid or 0)

    def finish_run(self, run_id: int, status: str, provenance: dict[str, object] | None = None) -> None:
        if provenance is not None:
            self._db.execute("UPDATE runs SET provenance_json = ? WHERE run_id = ?",
                             (json.dumps(provenance, sort_keys=True), run_id))
        self._db.execute("UPDATE runs SET finished_at = ?, status = ? WHERE run_id = ?",
                         (time.time(), status, run_id))

    def put_run_items(self, run_id: int, items: Sequence[RunItem]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT INTO run_items (run_id, item, checkpoint, suite, case_id, prompt, seed, image_key, "
                           "variant) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [(run_id, index, i.checkpoint, i.suite, i.case_id, i.prompt, i.seed, i.image_key,
                             i.variant) for index, i in enumerate(items)])

    def put_run_scores(self, run_id: int, rows: Sequence[tuple[int, str, str, str]]) -> None:
        """(item index, scorer name, scorer key, context key) rows: which score answers each cell."""
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO run_scores VALUES (?, ?, ?, ?, ?)",
                           [(run_id, *row) for row in rows])

    def put_run_cases(self, run_id: int, cases: Sequence[tuple[str, str, dict[str, object]]]) -> None:
        """(suite, case id, metadata) of every case a run asked for: kind, style, LoRAs, references,
        showcase checkpoints — what the analysis needs beyond the scores (NoTM, matrices)."""
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO run_cases VALUES (?, ?, ?, ?)",
                           [(run_id, suite, case_id, json.dumps(meta, sort_keys=True, default=str))
                            for suite, case_id, meta in cases])

    def run_cases(self, run_id: int) -> dict[tuple[str, str], dict[str, Any]]:
        rows = self._db.execute("SELECT suite, case_id, case_json FROM run_cases WHERE run_id = ?",
                                (run_id,)).fetchall()
        return {(row[0], row[1]): json.loads(row[2]) for row in rows}

    def put_run_sets(self, run_id: int, rows: Sequence[tuple[str, str, str, str, str]]) -> None:
        """(checkpoint, suite, scorer name, scorer key, set key) rows: which set score answers each set."""
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO run_sets VALUES (?, ?, ?, ?, ?, ?)",
                           [(run_id, *row) for row in rows])

    def put_run_checkpoint(self, run_id: int, name: str, source: str, sha256: str | None, status: str,
                           error: str | None) -> None:
        self._db.execute("INSERT OR REPLACE INTO run_checkpoints VALUES (?, ?, ?, ?, ?, ?)",
                         (run_id, name, source, sha256, status, error))

    def put_failure(self, run_id: int, scope: str, message: str, *, checkpoint: str | None = None,
                    image_key: str | None = None, scorer: str | None = None, suite: str | None = None,
                    case_id: str | None = None) -> None:
        self._db.execute("INSERT INTO run_failures (run_id, scope, checkpoint, image_key, scorer, message, suite, "
                         "case_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                         (run_id, scope, checkpoint, image_key, scorer, message, suite, case_id))

    def earlier_image_failures(self, run_id: int, keys: Iterable[str]) -> dict[str, tuple[int, str]]:
        """image key → (run, message) of the latest earlier run in which making that image failed."""
        rows = self._select_rows("SELECT image_key, max(run_id), message FROM run_failures WHERE scope = 'image' "
                                 "AND run_id < ? AND image_key IN ({}) GROUP BY image_key", sorted(set(keys)),
                                 prefix=(run_id,))
        return {row[0]: (int(row[1]), str(row[2])) for row in rows}

    def put_throughput(self, run_id: int, rows: Sequence[Throughput]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT INTO throughput VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           [(run_id, r.stage, r.workload, r.device_kind, r.device_name, r.executor, r.items,
                             r.units, r.seconds, r.fixed_seconds, r.tasks) for r in rows])

    def throughput(self) -> list[Throughput]:
        """Every measurement of every finished run, oldest first."""
        rows = self._db.execute(
            "SELECT t.stage, t.workload, t.device_kind, t.device_name, t.executor, t.items, t.units, t.seconds, "
            "t.fixed_seconds, t.tasks FROM throughput t JOIN runs r ON r.run_id = t.run_id "
            "ORDER BY t.run_id").fetchall()
        return [Throughput(*row) for row in rows]

    def existing_embeddings(self, backbone_key: str, image_keys: Sequence[str]) -> set[str]:
        """Which images have a stored feature vector under ``backbone_key`` (without reading the vectors)."""
        rows = self._select_rows("SELECT image_key FROM embeddings WHERE backbone_key = ? AND image_key IN ({})",
                                 list(image_keys), prefix=(backbone_key,))
        return {row[0] for row in rows}

    def latest_run(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT max(run_id) FROM runs").fetchone()
        return self.run(int(row[0])) if row and row[0] is not None else None

    def run(self, run_id: int) -> dict[str, Any] | None:
        row = self._db.execute("SELECT run_id, started_at, finished_at, status, spec_json, provenance_json "
                               "FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        return {"run_id": row[0], "started_at": row[1], "finished_at": row[2], "status": row[3],
                "spec": json.loads(row[4]), "provenance": json.loads(row[5])}

    def run_checkpoints(self, run_id: int) -> list[dict[str, object]]:
        rows = self._db.execute("SELECT name, source, sha256, status, error FROM run_checkpoints "
                                "WHERE run_id = ?", (run_id,)).fetchall()
        return [dict(zip(("name", "source", "sha256", "status", "error"), row, strict=True)) for row in rows]

    def run_failures(self, run_id: int) -> list[dict[str, object]]:
        """A run's failure records in the order they were made; ``suite``/``case_id`` name the case of a
        failure recorded per case (None in stores written before they were recorded)."""
        cursor = self._db.execute("SELECT * FROM run_failures WHERE run_id = ? ORDER BY rowid", (run_id,))
        names = [column[0] for column in cursor.description]
        fields = ("scope", "checkpoint", "image_key", "scorer", "message", "suite", "case_id")
        return [{name: record.get(name) for name in fields}
                for record in (dict(zip(names, row, strict=True)) for row in cursor.fetchall())]

    def run_scorer_keys(self, run_id: int) -> dict[str, str]:
        rows = self._db.execute("SELECT DISTINCT scorer, scorer_key FROM run_scores WHERE run_id = ? UNION "
                                "SELECT DISTINCT scorer, scorer_key FROM run_sets WHERE run_id = ?",
                                (run_id, run_id)).fetchall()
        return {row[0]: row[1] for row in rows}

    def set_frame(self, run_id: int) -> pd.DataFrame:
        """A run's set-level scores: one row per (checkpoint, suite, scorer); ``value`` NaN where missing."""
        import pandas as pd

        query = """
            SELECT rs.checkpoint, rs.suite, rs.scorer, s.value, s.images, s.references_count AS "references"
            FROM run_sets rs
            LEFT JOIN set_scores s ON s.scorer_key = rs.scorer_key AND s.set_key = rs.set_key
            WHERE rs.run_id = ? ORDER BY rs.checkpoint, rs.suite, rs.scorer"""
        frame = pd.read_sql_query(query, self._db, params=(run_id,))
        frame["value"] = frame["value"].astype(float)
        return frame

    def frame(self, run_id: int) -> pd.DataFrame:
        """The tidy score table of a run: one row per (cell, scorer); ``value`` is NaN where missing."""
        import pandas as pd

        query = f"""
            SELECT ri.checkpoint, ri.suite, ri.case_id, ri.prompt, ri.seed, rs.scorer, s.value,
                   ri.image_key, i.path AS image, {self._variant} AS variant
            FROM run_items ri
            JOIN run_scores rs ON rs.run_id = ri.run_id AND rs.item = ri.item
            LEFT JOIN images i ON i.key = ri.image_key
            LEFT JOIN scores s ON s.image_key = ri.image_key AND s.scorer_key = rs.scorer_key
                               AND s.context_key = rs.context_key
            WHERE ri.run_id = ?
            ORDER BY ri.item, rs.scorer"""
        frame = pd.read_sql_query(query, self._db, params=(run_id,))
        frame["value"] = frame["value"].astype(float)
        return frame

    def run_items(self, run_id: int) -> pd.DataFrame:
        return items_frame(self.run_item_rows(run_id))

    def run_item_rows(self, run_id: int) -> list[dict[str, Any]]:
        """A run's items (``image`` is the image's path in the store, None where it was not made; ``variant`` the
        sweep variant, '' without a sweep), as plain rows: scoring reads them mid-run, where pandas is not needed."""
        cursor = self._db.execute(
            f"""SELECT ri.item, ri.checkpoint, ri.suite, ri.case_id, ri.prompt, ri.seed, ri.image_key, i.path AS image,
                       {self._variant} AS variant
               FROM run_items ri LEFT JOIN images i ON i.key = ri.image_key WHERE ri.run_id = ? ORDER BY ri.item""",
            (run_id,))
        return [dict(zip(_RUN_ITEM_COLUMNS, row, strict=True)) for row in cursor.fetchall()]

    # --- helpers -------------------------------------------------------------------------------------

    def _select_in(self, query: str, values: list[str]) -> list[str]:
        return [row[0] for row in self._select_rows(query, values)]

    def _select_rows(self, query: str, values: list[str], prefix: tuple[object, ...] = ()) -> list[tuple]:
        rows: list[tuple] = []
        for chunk in _chunks(values, 500):
            rows.extend(self._db.execute(query.format(",".join("?" * len(chunk))), (*prefix, *chunk)).fetchall())
        return rows


def items_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """``Store.run_item_rows`` as a table (the same columns, in order, also when there are no rows)."""
    import pandas as pd

    return pd.DataFrame(rows, columns=list(_RUN_ITEM_COLUMNS))


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
