"""The persistent request cache: one SQLite file next to the build's output.

Keyed by `chat.sample_key` (model, messages, sampling parameters, sample index), so a rerun or
a resumed build sends zero requests that were already answered, and an edited prompt misses
only its own entries. Every answered sample is stored, including truncated or empty ones: they
were paid for, and replaying them gives the same rejection.

SQLite in WAL mode because several writers share it: the Prefect task threads of one build
(each with its own connection) and separate processes (workers, a second build resuming).
Entries are immutable and content-keyed, so `INSERT OR IGNORE` makes concurrent writers of the
same key harmless: whichever answer lands first is the one every later run replays.

`text` is the reply's content exactly as sent (a reasoning model's <think> block included);
`reasoning` is the server's separate reasoning field and `reasoning_tokens` the thinking's
token count. The answer is split from the thinking when a sample is read (`reasoning`), so
changing `llm.think_tags` needs no request again. Files written before these columns existed
are upgraded in place. The `meta` table remembers what the endpoint can do (structured
outputs), so a fully cached rerun sends no probe.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from mathsynth.errors import MathsynthError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS samples (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    refusal TEXT,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    created_at REAL NOT NULL,
    reasoning TEXT,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
"""
# Columns added after the first release, with their definitions (for ALTER TABLE).
_ADDED = {"reasoning": "TEXT", "reasoning_tokens": "INTEGER NOT NULL DEFAULT 0"}
_COLUMNS = (
    "key, model, text, finish_reason, refusal, tokens_in, tokens_out, cost_usd, reasoning,"
    " reasoning_tokens"
)

# SQLite caps host parameters per statement; look keys up in chunks below that.
_CHUNK = 500


class CacheError(MathsynthError):
    """The cache file cannot be opened or is not a mathsynth request cache."""


@dataclass(frozen=True, slots=True)
class CachedSample:
    key: str
    model: str
    text: str
    finish_reason: str
    refusal: str | None
    tokens_in: int
    tokens_out: int
    cost_usd: float
    reasoning: str | None = None
    reasoning_tokens: int = 0


class RequestCache:
    """Sample store on SQLite. Thread-safe; each process opens its own connection.

    Failure modes: an unwritable directory or a file that is not SQLite raises CacheError at
    construction; a write that waits more than `busy_timeout_s` on another writer raises
    sqlite3.OperationalError (does not happen with WAL's short write transactions).
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, check_same_thread=False, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode loses at most the last commits on power loss, never corrupts.
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            present = {row[1] for row in self._conn.execute("PRAGMA table_info(samples)")}
            for column, definition in _ADDED.items():
                if column not in present:
                    self._conn.execute(f"ALTER TABLE samples ADD COLUMN {column} {definition}")
        except (sqlite3.DatabaseError, OSError) as exc:
            raise CacheError(f"{self.path}: cannot open LLM request cache ({exc})") from None

    def get_many(self, keys: Iterable[str]) -> dict[str, CachedSample]:
        wanted = list(dict.fromkeys(keys))
        found: dict[str, CachedSample] = {}
        with self._lock:
            for start in range(0, len(wanted), _CHUNK):
                chunk = wanted[start : start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM samples WHERE key IN ({marks})", chunk
                ).fetchall()
                for row in rows:
                    found[row[0]] = CachedSample(*row)
        return found

    def put_many(self, samples: Iterable[CachedSample]) -> None:
        now = time.time()
        rows = [
            (
                s.key,
                s.model,
                s.text,
                s.finish_reason,
                s.refusal,
                s.tokens_in,
                s.tokens_out,
                s.cost_usd,
                now,
                s.reasoning,
                s.reasoning_tokens,
            )
            for s in samples
        ]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO samples (key, model, text, finish_reason, refusal,"
                    " tokens_in, tokens_out, cost_usd, created_at, reasoning, reasoning_tokens)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def get_meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", [key, value])

    def __len__(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM samples").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._conn.close()
