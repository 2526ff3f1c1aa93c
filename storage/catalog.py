"""The DuckDB catalog `OUT/catalog.duckdb`: dataset identity, build runs, the shard manifest
(which batches are finished) and stats views over the Parquet shards.

The manifest is the source of truth for resume: a batch counts as done only once all its
shards were renamed into place and its row was committed here. Each operation opens and
closes its own connection so a second process (`mathsynth stats` during a build) is locked
out for milliseconds, not for the whole build; a lock serialises this process's threads.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from mathsynth.errors import DatasetConflictError, MathsynthError
from mathsynth.storage.schemas import TABLES

CATALOG_NAME = "catalog.duckdb"

# LLM batch jobs (see Catalog.llm_batch); also created on first use, before the dataset is.
_LLM_BATCHES_DDL = """
CREATE TABLE IF NOT EXISTS llm_batches (
    digest VARCHAR PRIMARY KEY, batch_id VARCHAR, endpoint VARCHAR, model VARCHAR,
    requests INTEGER, status VARCHAR, submitted_at TIMESTAMP, updated_at TIMESTAMP
);
"""
_LLM_BATCH_COLUMNS = (
    "digest",
    "batch_id",
    "endpoint",
    "model",
    "requests",
    "status",
    "submitted_at",
    "updated_at",
)
_DDL = (
    """
CREATE TABLE IF NOT EXISTS dataset (
    key VARCHAR PRIMARY KEY, value VARCHAR
);
CREATE TABLE IF NOT EXISTS builds (
    run_id VARCHAR PRIMARY KEY, started_at TIMESTAMP, finished_at TIMESTAMP,
    status VARCHAR, config_hash VARCHAR, config JSON, seconds DOUBLE,
    batches_total INTEGER, batches_skipped INTEGER, counts JSON, llm JSON
);
CREATE TABLE IF NOT EXISTS batches (
    batch INTEGER PRIMARY KEY, generator VARCHAR, tasks INTEGER, run_id VARCHAR,
    finished_at TIMESTAMP, seconds DOUBLE, counts JSON, stats JSON
);
CREATE TABLE IF NOT EXISTS shards (
    tbl VARCHAR, batch INTEGER, path VARCHAR, rows BIGINT, bytes BIGINT,
    PRIMARY KEY (tbl, batch)
);
CREATE TABLE IF NOT EXISTS signatures (
    id VARCHAR, params VARCHAR, sig BLOB
);
"""
    + _LLM_BATCHES_DDL
)

# Keys of the `dataset` table that hold reports of the last build (near duplicates,
# decontamination); they describe this dataset only and go when its config changes.
REPORT_PREFIX = "report."


class CatalogBusyError(MathsynthError):
    """Another process holds the catalog (a build is writing); try again shortly."""


class CatalogError(MathsynthError):
    """The catalog file cannot be opened (permissions, immutable directory, not DuckDB)."""


def _search_here(con: duckdb.DuckDBPyConnection, out: Path) -> None:
    path = str(out.resolve()).replace("'", "''")
    con.execute(f"SET file_search_path = '{path}'")


def open_catalog(out: str | Path, read_only: bool = True) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection to a dataset's catalog in which its views work from any folder.

    The views read `sft/*.parquet` etc. relative to the dataset directory; this sets
    DuckDB's `file_search_path` to it. (Plain `duckdb.connect` works the same when run from
    inside the dataset directory.) The caller closes the connection.
    """
    out = Path(out)
    con = duckdb.connect(str(out / CATALOG_NAME), read_only=read_only)
    _search_here(con, out)
    return con


class Catalog:
    """Thin typed access to `catalog.duckdb` in one output directory."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.path = self.out / CATALOG_NAME
        self._lock = threading.Lock()
        self._session: tuple[int, duckdb.DuckDBPyConnection] | None = None

    @contextmanager
    def session(self) -> Iterator[None]:
        """Keep one connection open for the block: every operation of this thread inside it
        reuses it (opening the file costs ~20 ms, and a finished build's passes and card make
        dozens of queries). Other threads wait for the block to end, as for any connection.
        """
        with self.connect() as con:
            self._session = (threading.get_ident(), con)
            try:
                yield
            finally:
                self._session = None

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A short-lived connection; retries briefly while another process holds the file.

        Relative paths resolve against the dataset directory (`file_search_path`), which is
        what the views store, so a copied or moved dataset keeps working.

        Failure modes: CatalogBusyError when another process holds the lock past the retry
        window; CatalogError when the file cannot be opened at all (permissions, an
        immutable directory, not a DuckDB file), with DuckDB's reason.
        """
        session = self._session
        if session is not None and session[0] == threading.get_ident():
            yield session[1]  # inside `session()`: the open connection (read-write)
            return
        deadline = time.monotonic() + 10.0
        with self._lock:
            while True:
                try:
                    con = duckdb.connect(str(self.path), read_only=read_only)
                    break
                except duckdb.IOException as exc:
                    message = str(exc)
                    if "lock" not in message.lower():
                        raise CatalogError(
                            f"{self.path}: cannot open the catalog ({message.splitlines()[0]})"
                        ) from None
                    if time.monotonic() > deadline:
                        raise CatalogBusyError(
                            f"{self.path}: catalog is locked by another process"
                        ) from None
                    time.sleep(0.05)
            try:
                _search_here(con, self.out)
                yield con
            finally:
                con.close()

    # -- dataset identity -------------------------------------------------------------------
    def init(self, config_hash: str, config: dict[str, Any], overwrite: bool) -> str:
        """Create or adopt the dataset; returns its config hash.

        Failure modes: an existing dataset with a different config hash raises
        DatasetConflictError unless `overwrite` (the caller clears the shards first).
        """
        self.out.mkdir(parents=True, exist_ok=True)
        with self.connect() as con:
            con.execute(_DDL)
            row = con.execute("SELECT value FROM dataset WHERE key = 'config_hash'").fetchone()
            if row is not None and row[0] != config_hash and not overwrite:
                raise DatasetConflictError(
                    f"{self.out} holds a dataset built with config {row[0]}, not {config_hash}; "
                    "choose another --out or pass --overwrite to replace it"
                )
            if row is None or row[0] != config_hash:
                con.execute("DELETE FROM batches")
                con.execute("DELETE FROM shards")
                con.execute("DELETE FROM signatures")
                con.execute("DELETE FROM dataset WHERE starts_with(key, ?)", [REPORT_PREFIX])
                for key, value in {
                    "config_hash": config_hash,
                    "config": json.dumps(config, sort_keys=True),
                    "dataset_id": uuid.uuid4().hex,
                }.items():
                    con.execute("INSERT OR REPLACE INTO dataset VALUES (?, ?)", [key, value])
        return config_hash

    def stored_config_hash(self) -> str | None:
        if not self.path.exists():
            return None
        with self.connect(read_only=True) as con:
            try:
                row = con.execute("SELECT value FROM dataset WHERE key = 'config_hash'").fetchone()
            except duckdb.CatalogException:
                return None
        return row[0] if row else None

    # -- build runs -------------------------------------------------------------------------
    def start_build(self, run_id: str, config_hash: str, config: dict[str, Any]) -> None:
        with self.connect() as con:
            con.execute(
                "INSERT INTO builds (run_id, started_at, status, config_hash, config) "
                "VALUES (?, now(), 'running', ?, ?)",
                [run_id, config_hash, json.dumps(config, sort_keys=True)],
            )

    def finish_build(
        self,
        run_id: str,
        *,
        status: str,
        seconds: float,
        batches_total: int,
        batches_skipped: int,
        counts: dict[str, Any],
        llm: dict[str, Any] | None = None,
    ) -> None:
        with self.connect() as con:
            con.execute(
                "UPDATE builds SET finished_at = now(), status = ?, seconds = ?, "
                "batches_total = ?, batches_skipped = ?, counts = ?, llm = ? WHERE run_id = ?",
                [
                    status,
                    seconds,
                    batches_total,
                    batches_skipped,
                    json.dumps(counts),
                    json.dumps(llm or {}),
                    run_id,
                ],
            )

    # -- manifest ---------------------------------------------------------------------------
    def finished_batches(self) -> set[int]:
        with self.connect() as con:
            return {r[0] for r in con.execute("SELECT batch FROM batches").fetchall()}

    def record_batch(
        self,
        batch: int,
        *,
        generator: str,
        tasks: int,
        run_id: str,
        seconds: float,
        counts: dict[str, int],
        stats: dict[str, int],
        shards: list[tuple[str, str, int, int]],
    ) -> None:
        """Mark a batch done, with its shards (table, path, rows, bytes), in one transaction."""
        with self.connect() as con:
            con.execute("BEGIN")
            con.execute("DELETE FROM shards WHERE batch = ?", [batch])
            for tbl, path, rows, size in shards:
                con.execute(
                    "INSERT INTO shards VALUES (?, ?, ?, ?, ?)", [tbl, batch, path, rows, size]
                )
            con.execute(
                "INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, now(), ?, ?, ?)",
                [batch, generator, tasks, run_id, seconds, json.dumps(counts), json.dumps(stats)],
            )
            con.execute("COMMIT")

    def adjust_batch(
        self, batch: int, delta: dict[str, int], shards: dict[str, tuple[str, int, int]]
    ) -> None:
        """After a finished batch's shards were rewritten: add `delta` to its counts and
        record its shards {table: (path, rows, bytes)} as they are now, in one transaction."""
        self.adjust_batches([(batch, delta, shards)])

    def adjust_batches(
        self, updates: list[tuple[int, dict[str, int], dict[str, tuple[str, int, int]]]]
    ) -> None:
        """`adjust_batch` for many batches in one connection and one transaction (a pass
        over the whole dataset rewrites most shards; a connection costs ~20 ms)."""
        if not updates:
            return
        with self.connect() as con:
            con.execute("BEGIN")
            for batch, delta, shards in updates:
                row = con.execute("SELECT counts FROM batches WHERE batch = ?", [batch]).fetchone()
                counts = json.loads(row[0]) if row and row[0] else {}
                for key, value in delta.items():
                    counts[key] = counts.get(key, 0) + value
                con.execute(
                    "UPDATE batches SET counts = ? WHERE batch = ?", [json.dumps(counts), batch]
                )
                for tbl, (path, rows, size) in shards.items():
                    con.execute(
                        "INSERT OR REPLACE INTO shards VALUES (?, ?, ?, ?, ?)",
                        [tbl, batch, path, rows, size],
                    )
            con.execute("COMMIT")

    # -- LLM batch jobs (llm.backend: batch) ---------------------------------------------------
    # One row per batch submitted to a provider's Batch API, keyed by the digest of its input:
    # status "submitted" until its replies are in the request cache ("done"), or "failed".
    # A rerun finds a submitted batch here and waits for it instead of paying for it again.
    # The table is created on first use: seed decoupling asks before the dataset exists.

    def llm_batch(self, digest: str) -> dict[str, Any] | None:
        """The batch job submitted for input `digest`, or None."""
        with self.connect() as con:
            con.execute(_LLM_BATCHES_DDL)
            row = con.execute(
                f"SELECT {', '.join(_LLM_BATCH_COLUMNS)} FROM llm_batches WHERE digest = ?",
                [digest],
            ).fetchone()
        return dict(zip(_LLM_BATCH_COLUMNS, row, strict=True)) if row else None

    def save_llm_batch(
        self, digest: str, *, batch_id: str, endpoint: str, model: str, requests: int, status: str
    ) -> None:
        """Record a submitted batch, or its new status (requests 0 keeps the count)."""
        with self.connect() as con:
            con.execute(_LLM_BATCHES_DDL)
            con.execute(
                "INSERT INTO llm_batches VALUES (?, ?, ?, ?, ?, ?, now(), now()) "
                "ON CONFLICT (digest) DO UPDATE SET batch_id = excluded.batch_id, "
                "status = excluded.status, updated_at = now(), "
                "requests = CASE WHEN excluded.requests > 0 THEN excluded.requests "
                "ELSE llm_batches.requests END",
                [digest, batch_id, endpoint, model, requests, status],
            )

    def llm_batches(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every recorded batch job (with `status`, only those), oldest first."""
        if not self.path.exists():
            return []
        with self.connect() as con:
            con.execute(_LLM_BATCHES_DDL)
            where, params = ("WHERE status = ?", [status]) if status else ("", [])
            rows = con.execute(
                f"SELECT {', '.join(_LLM_BATCH_COLUMNS)} FROM llm_batches {where} "
                "ORDER BY submitted_at",
                params,
            ).fetchall()
        return [dict(zip(_LLM_BATCH_COLUMNS, row, strict=True)) for row in rows]

    def restore_llm_batches(self, rows: list[dict[str, Any]]) -> None:
        """Put back batch jobs read from a catalog that was replaced (--overwrite)."""
        if not rows:
            return
        with self.connect() as con:
            con.execute(_LLM_BATCHES_DDL)
            for row in rows:
                con.execute(
                    "INSERT OR REPLACE INTO llm_batches VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [row[c] for c in _LLM_BATCH_COLUMNS],
                )

    # -- reports and near-duplicate signatures ------------------------------------------------
    def set_report(self, name: str, value: Any) -> None:
        """Keep a JSON-able report of the last build under `name` (see REPORT_PREFIX)."""
        with self.connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO dataset VALUES (?, ?)",
                [REPORT_PREFIX + name, json.dumps(value, sort_keys=True)],
            )

    def report(self, name: str) -> Any:
        """A report kept with `set_report`, or None (also for a catalog made before reports)."""
        if not self.path.exists():
            return None
        with self.connect() as con:
            try:
                row = con.execute(
                    "SELECT value FROM dataset WHERE key = ?", [REPORT_PREFIX + name]
                ).fetchone()
            except duckdb.CatalogException:
                return None
        return json.loads(row[0]) if row else None

    @contextmanager
    def signature_store(self, params: str) -> Iterator[SignatureStore]:
        """Stored near-duplicate signatures made under `params`, read and added through one
        connection for the length of a pass (see `SignatureStore`)."""
        with self.connect() as con:
            yield SignatureStore(con, params)

    # -- views and stats --------------------------------------------------------------------
    def refresh_views(self) -> None:
        """(Re)create one view per table over its shards, plus the stats views.

        Views hold paths relative to the dataset directory (resolved through
        `file_search_path`, see `open_catalog`), so the directory can be copied or moved.
        """
        with self.connect() as con:
            for table in TABLES:
                if any((self.out / table).glob("*.parquet")):
                    con.execute(
                        f"CREATE OR REPLACE VIEW {table} AS "
                        f"SELECT * FROM read_parquet('{table}/*.parquet', union_by_name = true)"
                    )
                else:
                    con.execute(f"DROP VIEW IF EXISTS {table}")
            if any((self.out / "sft").glob("*.parquet")):
                con.execute(
                    "CREATE OR REPLACE VIEW sft_stats AS SELECT generator, method, "
                    "verification.status AS status, count(*) AS rows FROM sft "
                    "GROUP BY ALL ORDER BY ALL"
                )
            else:
                con.execute("DROP VIEW IF EXISTS sft_stats")
            if any((self.out / "rejected").glob("*.parquet")):
                con.execute(
                    "CREATE OR REPLACE VIEW rejected_stats AS SELECT stage, reason, "
                    "count(*) AS rows FROM rejected GROUP BY ALL ORDER BY rows DESC"
                )
            else:
                con.execute("DROP VIEW IF EXISTS rejected_stats")

    def query(self, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        with self.connect() as con:
            return con.execute(sql, params or []).fetchall()


class SignatureStore:
    """Signatures by row id (`signatures` table): a row id names fixed content, so its
    signature stays valid across builds. Ids already stored are never stored twice."""

    def __init__(self, con: duckdb.DuckDBPyConnection, params: str) -> None:
        self.con = con
        self.params = params

    def get(self, ids: list[str]) -> dict[str, bytes]:
        """The stored signatures of those of `ids` that have one."""
        if not ids:
            return {}
        self.con.register("wanted", pa.table({"id": pa.array(ids, type=pa.string())}))
        try:
            return dict(
                self.con.execute(
                    "SELECT s.id, s.sig FROM signatures s JOIN wanted w ON s.id = w.id "
                    "WHERE s.params = ?",
                    [self.params],
                ).fetchall()
            )
        finally:
            self.con.unregister("wanted")

    def put(self, ids: list[str], blobs: list[bytes]) -> None:
        if not ids:
            return
        new = pa.table(
            {"id": pa.array(ids, type=pa.string()), "sig": pa.array(blobs, type=pa.binary())}
        )
        self.con.register("new_signatures", new)
        try:
            self.con.execute(
                "INSERT INTO signatures SELECT n.id, ?, n.sig FROM new_signatures n "
                "WHERE n.id NOT IN (SELECT id FROM signatures WHERE params = ?)",
                [self.params, self.params],
            )
        finally:
            self.con.unregister("new_signatures")
