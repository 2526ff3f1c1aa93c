"""Exact dedup: inside a batch (stage) and across finished batches (storage pass)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.dataset as ds

from mathsynth.records import PreferencePair, Problem, Rejection, Verification
from mathsynth.storage.catalog import Catalog
from mathsynth.storage.dedup import drop_cross_batch_duplicates
from mathsynth.storage.shards import write_batch_shards
from mathsynth.verifiers.dedup import ExactDedup


def problem(n: int) -> Problem:
    return Problem(
        generator="mugglemath",
        method="change_numbers",
        seed_id="s",
        question=f"What is {n} + 1?",
        solution=f"{n} + 1 = {n + 1}\nThe answer is {n + 1}.",
        answer=str(n + 1),
        program="def solution(a):\n    return a + 1",
        variables={"a": n},
        verification=Verification("verified", "exec", "ok"),
    )


def pair(p: Problem) -> PreferencePair:
    return PreferencePair(p.id, p.question, p.solution, p.solution + "!", "change_number", 0, 1, 0)


def test_stage_keeps_first_copy_in_a_batch() -> None:
    stage = ExactDedup()
    out = list(stage.run([problem(1), problem(2), problem(1), Rejection("x", "y", "z", {})]))
    kept = [r for r in out if isinstance(r, Problem)]
    assert [p.question for p in kept] == ["What is 1 + 1?", "What is 2 + 1?"]
    dup = [r for r in out if isinstance(r, Rejection) and r.stage == "dedup"]
    assert len(dup) == 1 and dup[0].reason == "duplicate"
    assert stage.stats["rejected:duplicate"] == 1


def record(catalog: Catalog, out: Path, batch: int, records: list) -> None:
    info = write_batch_shards(out, batch, records)
    counts = {t: s.rows for t, s in info.items()}
    catalog.record_batch(
        batch,
        generator="mugglemath",
        tasks=len(records),
        run_id="r",
        seconds=0.0,
        counts=counts,
        stats={},
        shards=[(t, str(s.path.relative_to(out)), s.rows, s.bytes) for t, s in info.items()],
    )


def test_pass_keeps_the_lowest_batch_and_is_idempotent(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    catalog.init("h", {}, overwrite=False)
    a, b, c = problem(1), problem(2), problem(3)
    record(catalog, tmp_path, 0, [a, b, pair(a)])
    record(catalog, tmp_path, 1, [b, c, pair(b), pair(a)])
    record(catalog, tmp_path, 2, [a])

    dropped = drop_cross_batch_duplicates(tmp_path, catalog)
    assert dropped == {"sft": 2, "dpo": 1}
    sft = ds.dataset(tmp_path / "sft").to_table().to_pylist()
    assert sorted(r["question"] for r in sft) == sorted(p.question for p in (a, b, c))
    assert len(ds.dataset(tmp_path / "dpo").to_table()) == 2
    rejected = ds.dataset(tmp_path / "rejected").to_table().to_pylist()
    assert sorted(r["reason"] for r in rejected) == ["duplicate_across_batches"] * 2
    # the manifest follows the rewritten shards
    rows = dict(catalog.query("SELECT tbl, sum(rows) FROM shards GROUP BY tbl"))
    assert rows == {"sft": 3, "dpo": 2, "rejected": 2}
    counts = catalog.query("SELECT counts->>'sft' FROM batches ORDER BY batch")
    assert [int(c[0]) for c in counts] == [2, 1, 0]

    assert drop_cross_batch_duplicates(tmp_path, catalog) == {}
    assert len(ds.dataset(tmp_path / "sft").to_table()) == 3
