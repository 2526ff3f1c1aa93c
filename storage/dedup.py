"""Removing rows that two batches both produced, once a build has finished.

Batches run in parallel, so a batch cannot know what another one will emit; this pass looks
at the finished dataset instead. An sft row whose normalised question (`question_key`) was
already seen in a lower-numbered shard (or earlier in the same shard) is dropped, whichever
generator made either copy; it is kept in `rejected/` (reason `duplicate_across_batches`,
naming its kept twin). Pairs and statements are dropped when their id is already in an
earlier shard or when the problem they were derived from is no longer in `sft`. Shards are
rewritten atomically. The rule depends only on shard numbers and row order, so the result is
the same whether the build ran in one go or was resumed, and rerunning the pass changes
nothing.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mathsynth.records import Rejection
from mathsynth.storage.catalog import Catalog
from mathsynth.storage.shards import shard_numbers, shard_path, write_shard
from mathsynth.text import question_key

DERIVED_TABLES = ("dpo", "formal")


def drop_cross_batch_duplicates(out: Path, catalog: Catalog) -> dict[str, int]:
    """Apply the rule of the module docstring; returns rows dropped per table."""
    dropped: Counter[str] = Counter()
    kept_sft, twins = _sft_twins(out)
    for shard, pairs in twins.items():
        data = pq.read_table(shard_path(out, "sft", shard))
        drop = pc.is_in(data.column("id"), value_set=pa.array(list(pairs), type=pa.string()))
        removed = data.filter(drop).to_pylist()
        _add_rejections(out, shard, removed, pairs)
        write_shard(out, "sft", shard, data.filter(pc.invert(drop)).to_pylist())
        catalog.adjust_batch(
            shard,
            {
                "sft": -len(removed),
                "rejected": len(removed),
                "rejected.dedup": len(removed),
                "rejected_before_derived": len(removed),
            },
            _shard_rows(out, shard),
        )
        dropped["sft"] += len(removed)
    for table in DERIVED_TABLES:
        seen: set[str] = set()
        for shard in shard_numbers(out, table):
            data = pq.read_table(shard_path(out, table, shard), columns=["id", "source_id"])
            ids, sources = data.column("id").to_pylist(), data.column("source_id").to_pylist()
            drop = []
            for row_id, source in zip(ids, sources, strict=True):
                orphan = kept_sft is not None and source not in kept_sft
                drop.append(row_id in seen or orphan)
                seen.add(row_id)
            if not any(drop):
                continue
            full = pq.read_table(shard_path(out, table, shard))
            mask = pa.array(drop, type=pa.bool_())
            write_shard(out, table, shard, full.filter(pc.invert(mask)).to_pylist())
            catalog.adjust_batch(shard, {table: -sum(drop)}, _shard_rows(out, shard))
            dropped[table] += sum(drop)
    return dict(dropped)


def _sft_twins(out: Path) -> tuple[set[str] | None, dict[int, dict[str, str]]]:
    """(ids that stay in sft, {shard: {dropped id: kept twin id}}); None when no sft table."""
    shards = shard_numbers(out, "sft")
    if not shards:
        return None, {}
    first: dict[str, str] = {}
    kept: set[str] = set()
    twins: dict[int, dict[str, str]] = defaultdict(dict)
    for shard in shards:
        data = pq.read_table(shard_path(out, "sft", shard), columns=["id", "question"])
        ids, questions = data.column("id").to_pylist(), data.column("question").to_pylist()
        for row_id, question in zip(ids, questions, strict=True):
            key = question_key(question)
            if key in first:
                twins[shard][row_id] = first[key]
            else:
                first[key] = row_id
                kept.add(row_id)
    return kept, dict(twins)


def _add_rejections(
    out: Path, shard: int, rows: list[dict[str, Any]], twins: dict[str, str]
) -> None:
    path = shard_path(out, "rejected", shard)
    existing = pq.read_table(path).to_pylist() if path.exists() else []
    new = [
        Rejection(
            "dedup",
            "duplicate_across_batches",
            f"row {row['id']} ({row['generator']}/{row['method']}) has the same question as row "
            f"{twins[row['id']]} of an earlier batch, which is kept",
            row,
        ).to_row()
        for row in rows
    ]
    write_shard(out, "rejected", shard, existing + new)


def _shard_rows(out: Path, shard: int) -> dict[str, tuple[str, int, int]]:
    """{table: (relative path, rows, bytes)} of one batch's shards as they are now."""
    found = {}
    for table in ("sft", *DERIVED_TABLES, "rejected"):
        path = shard_path(out, table, shard)
        if path.exists():
            found[table] = (
                str(path.relative_to(out)),
                pq.read_metadata(path).num_rows,
                path.stat().st_size,
            )
    return found
