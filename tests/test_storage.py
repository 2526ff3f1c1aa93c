"""Shard writer atomicity, schemas and the DuckDB catalog."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mathsynth.errors import DatasetConflictError
from mathsynth.records import (
    FormalStatement,
    PreferencePair,
    Problem,
    Rejection,
    Verification,
)
from mathsynth.storage import shards
from mathsynth.storage.catalog import Catalog, open_catalog
from mathsynth.storage.schemas import SCHEMAS


def _problem(i: int) -> Problem:
    return Problem(
        generator="infinitymath",
        method="instantiate",
        seed_id="s1",
        question=f"What is {i} + 1?",
        solution=f"{i} + 1 = {i + 1}\nThe answer is {i + 1}.",
        answer=str(i + 1),
        program="def solution(a):\n    return a + 1",
        variables={"a": i},
        concepts=["arithmetic", "addition"],
        verification=Verification("verified", "exec", "ok"),
    )


def test_rows_match_schemas() -> None:
    pair = PreferencePair("p", "q", "good", "bad", "operator_swap", 0, 3, 1)
    formal = FormalStatement("p", "q", "import Mathlib", "theorem x : 1 = 1 := by rfl")
    rejected = Rejection("exec_verify", "exec_mismatch", "detail", {"a": 1})
    for record in (_problem(1), pair, formal, rejected):
        row = record.to_row()
        assert set(row) == set(SCHEMAS[record.table].names)


def test_messages_are_trl_conversations(tmp_path: Path) -> None:
    shards.write_batch_shards(tmp_path, 0, [_problem(1)])
    table = pq.read_table(tmp_path / "sft" / "part-00000.parquet")
    messages = table.column("messages").to_pylist()[0]
    assert [m["role"] for m in messages] == ["user", "assistant"]
    assert messages[0]["content"] == "What is 1 + 1?"


def test_batch_shards_route_by_table(tmp_path: Path) -> None:
    recs = [_problem(i) for i in range(5)] + [Rejection("s", "r", "d", {"i": 1})]
    info = shards.write_batch_shards(tmp_path, 7, recs)
    assert set(info) == {"sft", "rejected"}
    assert pq.read_table(tmp_path / "sft" / "part-00007.parquet").num_rows == 5
    assert pq.read_table(tmp_path / "rejected" / "part-00007.parquet").num_rows == 1
    assert not any((tmp_path / ".tmp").iterdir())


def test_failed_write_leaves_no_visible_file(tmp_path: Path, monkeypatch) -> None:
    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(shards.pq, "write_table", explode)
    with pytest.raises(OSError):
        shards.write_shard(tmp_path, "sft", 0, [_problem(1).to_row()])
    assert not (tmp_path / "sft" / "part-00000.parquet").exists()
    assert list((tmp_path / ".tmp").iterdir()) == []


def test_rewrite_replaces_shard(tmp_path: Path) -> None:
    shards.write_shard(tmp_path, "sft", 3, [_problem(1).to_row(), _problem(2).to_row()])
    shards.write_shard(tmp_path, "sft", 3, [_problem(1).to_row()])
    assert pq.read_table(tmp_path / "sft" / "part-00003.parquet").num_rows == 1


def test_row_groups_are_bounded(tmp_path: Path) -> None:
    rows = [_problem(i).to_row() for i in range(shards.ROW_GROUP_SIZE + 10)]
    shards.write_shard(tmp_path, "sft", 0, rows)
    meta = pq.ParquetFile(tmp_path / "sft" / "part-00000.parquet").metadata
    assert meta.num_row_groups == 2
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_clear_temp_removes_leftovers(tmp_path: Path) -> None:
    (tmp_path / ".tmp").mkdir()
    (tmp_path / ".tmp" / "sft-00001-dead.parquet").write_bytes(b"partial")
    assert shards.clear_temp(tmp_path) == 1


def test_catalog_manifest_and_views(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    catalog.init("abc", {"x": 1}, overwrite=False)
    info = shards.write_batch_shards(tmp_path, 0, [_problem(i) for i in range(3)])
    catalog.record_batch(
        0,
        generator="infinitymath",
        tasks=3,
        run_id="r1",
        seconds=0.1,
        counts={"sft": 3},
        stats={},
        shards=[(t, str(s.path), s.rows, s.bytes) for t, s in info.items()],
    )
    assert catalog.finished_batches() == {0}
    catalog.refresh_views()
    con = open_catalog(tmp_path)
    assert con.execute("SELECT count(*) FROM sft").fetchone() == (3,)
    assert con.execute("SELECT rows FROM sft_stats").fetchone() == (3,)
    con.close()


def test_catalog_refuses_other_config(tmp_path: Path) -> None:
    Catalog(tmp_path).init("abc", {}, overwrite=False)
    with pytest.raises(DatasetConflictError, match="--overwrite"):
        Catalog(tmp_path).init("def", {}, overwrite=False)
    Catalog(tmp_path).init("def", {}, overwrite=True)
    assert Catalog(tmp_path).stored_config_hash() == "def"


def test_ids_are_stable() -> None:
    assert _problem(3).id == _problem(3).id
    assert _problem(3).id != _problem(4).id
    assert len(_problem(3).id) == 16
