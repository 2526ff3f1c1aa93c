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

`drop_sft_rows` is the one way rows leave a finished dataset: the near-duplicate pass
(`mathsynth.verifiers.neardup`, run by the executor) uses it too.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mathsynth.records import Rejection
from mathsynth.storage.catalog import Catalog
from mathsynth.storage.schemas import SCHEMAS
from mathsynth.storage.shards import shard_numbers, shard_path, write_shard
from mathsynth.text import question_key

DERIVED_TABLES = ("dpo", "formal")


def drop_cross_batch_duplicates(out: Path, catalog: Catalog) -> dict[str, int]:
    """Apply the rule of the module docstring; returns rows dropped per table."""
    twins = _sft_twins(out)
    drops = {
        shard: {
            row_id: f"has the same question as row {twin} of an earlier batch, which is kept"
            for row_id, twin in pairs.items()
        }
        for shard, pairs in twins.items()
    }
    return drop_sft_rows(out, catalog, drops, "duplicate_across_batches")


def drop_sft_rows(
    out: Path, catalog: Catalog, drops: Mapping[int, Mapping[str, str]], reason: str
) -> dict[str, int]:
    """Move the sft rows `drops` names ({shard: {row id: why}}) to `rejected/` (stage
    `dedup`, `reason`, detail "row ID (generator/method) <why>"), then drop the pairs and
    statements left without their problem; returns rows dropped per table. The manifest's
    counts and shard rows follow the rewritten shards (one catalog transaction at the end)."""
    dropped: Counter[str] = Counter()
    deltas: dict[int, Counter[str]] = defaultdict(Counter)
    for shard, why in sorted(drops.items()):
        if not why:
            continue
        data = pq.read_table(shard_path(out, "sft", shard))
        drop = pc.is_in(data.column("id"), value_set=pa.array(list(why), type=pa.string()))
        removed = data.filter(drop).to_pylist()
        if not removed:
            continue
        _add_rejections(out, shard, removed, why, reason)
        write_shard(out, "sft", shard, data.filter(pc.invert(drop)))
        deltas[shard].update(
            {
                "sft": -len(removed),
                "rejected": len(removed),
                "rejected.dedup": len(removed),
                "rejected_before_derived": len(removed),
            }
        )
        dropped["sft"] += len(removed)
    if shard_numbers(out, "sft"):
        for table, shard, n in _drop_derived(out, _sft_ids(out)):
            deltas[shard][table] -= n
            dropped[table] += n
    catalog.adjust_batches(
        [(shard, dict(delta), _shard_rows(out, shard)) for shard, delta in sorted(deltas.items())]
    )
    return dict(dropped)


def _sft_ids(out: Path) -> set[str]:
    ids: set[str] = set()
    for shard in shard_numbers(out, "sft"):
        ids.update(pq.read_table(shard_path(out, "sft", shard), columns=["id"])["id"].to_pylist())
    return ids


def _drop_derived(out: Path, kept_sft: set[str]) -> Iterator[tuple[str, int, int]]:
    """Drop pairs and statements already in an earlier shard or whose problem is gone;
    yields (table, shard, rows dropped) per rewritten shard."""
    for table in DERIVED_TABLES:
        seen: set[str] = set()
        for shard in shard_numbers(out, table):
            data = pq.read_table(shard_path(out, table, shard), columns=["id", "source_id"])
            ids, sources = data.column("id").to_pylist(), data.column("source_id").to_pylist()
            drop = []
            for row_id, source in zip(ids, sources, strict=True):
                drop.append(row_id in seen or source not in kept_sft)
                seen.add(row_id)
            if not any(drop):
                continue
            full = pq.read_table(shard_path(out, table, shard))
            mask = pa.array(drop, type=pa.bool_())
            write_shard(out, table, shard, full.filter(pc.invert(mask)))
            yield table, shard, sum(drop)


def _sft_twins(out: Path) -> dict[int, dict[str, str]]:
    """{shard: {dropped id: kept twin id}} for sft questions already seen earlier."""
    first: dict[str, str] = {}
    twins: dict[int, dict[str, str]] = defaultdict(dict)
    for shard in shard_numbers(out, "sft"):
        data = pq.read_table(shard_path(out, "sft", shard), columns=["id", "question"])
        ids, questions = data.column("id").to_pylist(), data.column("question").to_pylist()
        for row_id, question in zip(ids, questions, strict=True):
            key = question_key(question)
            if key in first:
                twins[shard][row_id] = first[key]
            else:
                first[key] = row_id
    return dict(twins)


def _add_rejections(
    out: Path, shard: int, rows: list[dict[str, Any]], why: Mapping[str, str], reason: str
) -> None:
    path = shard_path(out, "rejected", shard)
    schema = SCHEMAS["rejected"]
    new_rows = [
        Rejection(
            "dedup",
            reason,
            f"row {row['id']} ({row['generator']}/{row['method']}) {why[row['id']]}",
            row,
        ).to_row()
        for row in rows
    ]
    new = pa.Table.from_pylist(new_rows, schema=schema)
    if path.exists():
        new = pa.concat_tables([pq.read_table(path).select(schema.names).cast(schema), new])
    write_shard(out, "rejected", shard, new)


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


def sft_questions(out: Path) -> Iterator[tuple[int, list[str], list[str]]]:
    """(shard, row ids, questions) of every sft shard, in shard order."""
    for shard in shard_numbers(out, "sft"):
        data = pq.read_table(shard_path(out, "sft", shard), columns=["id", "question"])
        yield shard, data.column("id").to_pylist(), data.column("question").to_pylist()
