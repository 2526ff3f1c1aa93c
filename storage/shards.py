"""Parquet shards: `OUT/<table>/part-NNNNN.parquet`, written atomically.

A shard is written to `OUT/.tmp/` and renamed into place only once complete, so a reader (or
a crash) never sees a partial file. Shard numbers are batch numbers: a rerun of the same batch
rewrites the same file names, which is what makes a resumed build free of duplicates.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mathsynth.records import Record
from mathsynth.storage.schemas import SCHEMAS, TABLES

ROW_GROUP_SIZE = 2048
TMP_DIR = ".tmp"


@dataclass(frozen=True, slots=True)
class ShardInfo:
    table: str
    path: Path
    rows: int
    bytes: int


def shard_path(out: Path, table: str, shard: int) -> Path:
    return out / table / f"part-{shard:05d}.parquet"


def shard_numbers(out: Path, table: str) -> list[int]:
    """The shard numbers present for `table`, ascending."""
    return sorted(int(p.stem.removeprefix("part-")) for p in (out / table).glob("part-*.parquet"))


def write_shard(
    out: Path, table: str, shard: int, rows: list[dict[str, Any]] | pa.Table
) -> ShardInfo:
    """Write one shard atomically (temp file in OUT/.tmp, fsync, rename). `rows` are dicts,
    or an Arrow table of the shard's schema (a rewritten shard: no round trip via Python).

    Failure modes: rows that do not fit the table's schema raise pyarrow errors before
    anything becomes visible; the temp file is always removed.
    """
    schema = SCHEMAS[table]
    final = shard_path(out, table, shard)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = out / TMP_DIR
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / f"{table}-{shard:05d}-{uuid.uuid4().hex}.parquet"
    try:
        if isinstance(rows, pa.Table):
            table_data = rows.select(schema.names).cast(schema)
        else:
            table_data = pa.Table.from_pylist(rows, schema=schema)
        pq.write_table(
            table_data,
            tmp,
            compression="zstd",
            row_group_size=ROW_GROUP_SIZE,
        )
        with tmp.open("rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    return ShardInfo(table, final, table_data.num_rows, final.stat().st_size)


def write_batch_shards(out: Path, shard: int, records: Iterable[Record]) -> dict[str, ShardInfo]:
    """Route records by table and write one shard per table that received rows."""
    by_table: dict[str, list[dict[str, Any]]] = {t: [] for t in TABLES}
    for record in records:
        by_table[record.table].append(record.to_row())
    return {table: write_shard(out, table, shard, rows) for table, rows in by_table.items() if rows}


def clear_temp(out: Path) -> int:
    """Remove temp files a crashed run left behind; returns how many were removed."""
    tmp_dir = out / TMP_DIR
    if not tmp_dir.exists():
        return 0
    removed = 0
    for p in tmp_dir.iterdir():
        p.unlink(missing_ok=True)
        removed += 1
    return removed


def remove_shard(out: Path, table: str, shard: int) -> None:
    shard_path(out, table, shard).unlink(missing_ok=True)
