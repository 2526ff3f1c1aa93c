"""Removing rows that two batches both produced, once a build has finished.

Batches run in parallel, so a batch cannot know what another one will emit; this pass looks
at the finished dataset instead. For every id present in more than one shard of a table,
the row in the lowest-numbered shard is kept and the others are dropped, the shards being
rewritten atomically. A dropped problem is kept in `rejected/` (reason
`duplicate_across_batches`); the pairs and statements derived from it are identical to those
of the kept copy and are simply dropped. The rule depends only on shard numbers, so the
result is the same whether the build ran in one go or was resumed, and rerunning the pass
changes nothing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mathsynth.records import Rejection
from storage.catalog import Catalog
from storage.shards import shard_path, write_shard

DEDUP_TABLES = ("sft", "dpo", "formal")


def drop_cross_batch_duplicates(out: Path, catalog: Catalog) -> dict[str, int]:
    """Drop later copies of ids found in several shards; returns rows dropped per table."""
    dropped: Counter[str] = Counter()
    for table in DEDUP_TABLES:
        if not any((out / table).glob("part-*.parquet")):
            continue
        for shard, ids in _later_copies(out, table).items():
            data = pq.read_table(shard_path(out, table, shard))
            duplicate = pc.is_in(data.column("id"), value_set=pa.array(ids, type=pa.string()))
            kept = data.filter(pc.invert(duplicate))
            removed = data.filter(duplicate).to_pylist()
            delta: Counter[str] = Counter({table: -len(removed)})
            if table == "sft":
                _add_rejections(out, shard, removed)
                delta["rejected"] += len(removed)
                delta["rejected.dedup"] += len(removed)
            write_shard(out, table, shard, kept.to_pylist())
            catalog.adjust_batch(shard, delta, _shard_rows(out, shard))
            dropped[table] += len(removed)
    return dict(dropped)


def _add_rejections(out: Path, shard: int, rows: list[dict]) -> None:
    path = shard_path(out, "rejected", shard)
    existing = pq.read_table(path).to_pylist() if path.exists() else []
    new = [
        Rejection(
            "dedup",
            "duplicate_across_batches",
            f"row {row['id']} was also produced by an earlier batch, which keeps it",
            row,
        ).to_row()
        for row in rows
    ]
    write_shard(out, "rejected", shard, existing + new)


def _shard_rows(out: Path, shard: int) -> dict[str, tuple[str, int, int]]:
    """{table: (relative path, rows, bytes)} of one batch's shards as they are now."""
    found = {}
    for table in (*DEDUP_TABLES, "rejected"):
        path = shard_path(out, table, shard)
        if path.exists():
            found[table] = (
                str(path.relative_to(out)),
                pq.read_metadata(path).num_rows,
                path.stat().st_size,
            )
    return found


def _later_copies(out: Path, table: str) -> dict[int, list[str]]:
    """{shard number: ids to drop from it} for ids that an earlier shard also holds."""
    pattern = (out / table).resolve() / "part-*.parquet"
    rows = duckdb.sql(
        f"""
        WITH located AS (
            SELECT id, CAST(regexp_extract(filename, 'part-(\\d+)\\.parquet$', 1) AS INTEGER)
                AS shard
            FROM read_parquet('{pattern}', filename = true)
        ), firsts AS (
            SELECT id, min(shard) AS first FROM located GROUP BY id HAVING count(*) > 1
        )
        SELECT located.shard, list(DISTINCT located.id)
        FROM located JOIN firsts USING (id)
        WHERE located.shard > firsts.first
        GROUP BY located.shard
        """
    ).fetchall()
    return {int(shard): list(ids) for shard, ids in rows}
