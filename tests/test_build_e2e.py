"""The whole path on the embedded default: seeds → InfinityMATH → sandbox → shards → catalog,
run as a real Prefect flow; resume, determinism, config conflicts and re-execution."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import pyarrow.dataset as ds
import pytest

from flows.build import run_build
from mathsynth.config import load_config
from mathsynth.errors import DatasetConflictError

pytestmark = pytest.mark.usefixtures("prefect_harness")


def small_config(out: Path, **overrides):
    values = {
        "out": out,
        "max_seeds": 6,
        "variants": 12,
        "batch_size": 30,
        "generators": "infinitymath",
        **overrides,
    }
    return load_config(**values)


def read_table(out: Path, table: str) -> list[dict]:
    return ds.dataset(out / table, format="parquet").to_table().to_pylist()


def test_build_resume_and_reexecution(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    report = run_build(small_config(out))
    rows = read_table(out, "sft")
    assert report["totals"]["sft"] == len(rows) == 6 * 12
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["verification"]["status"] == "verified" for r in rows)
    assert all(r["verification"]["checker"] == "exec" for r in rows)
    assert all(r["question"] and "{" not in r["question"] for r in rows)
    assert all(r["solution"].endswith(f"The answer is {r['answer']}.") for r in rows)
    prov = json.loads(rows[0]["provenance"])
    assert prov["config_hash"] == small_config(out).content_hash()

    # Re-execute a sample outside the pipeline: a plain interpreter, not our sandbox.
    sample = rows[::7]
    script = (
        "import json, sys\nfrom fractions import Fraction\n"
        "out = []\n"
        "for row in json.load(sys.stdin):\n"
        "    ns = {}\n"
        "    exec(row['program'], ns)\n"
        "    v = {k: (Fraction(x) if isinstance(x, str) and '/' in x else x)\n"
        "         for k, x in json.loads(row['variables']).items()}\n"
        "    out.append(str(ns['solution'](**v)))\n"
        "print(json.dumps(out))\n"
    )
    payload = json.dumps([{"program": r["program"], "variables": r["variables"]} for r in sample])
    proc = subprocess.run(
        [sys.executable, "-c", script], input=payload, capture_output=True, text=True, check=True
    )
    from fractions import Fraction

    for row, got in zip(sample, json.loads(proc.stdout), strict=True):
        assert Fraction(got).limit_denominator(10**6) == Fraction(row["answer"]), row["id"]

    # Rerun: every batch skipped, identical rows, no duplicates.
    again = run_build(small_config(out))
    assert again["batches_skipped"] == again["batches"]
    assert sorted(r["id"] for r in read_table(out, "sft")) == sorted(r["id"] for r in rows)

    con = duckdb.connect(str(out / "catalog.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM builds WHERE status = 'completed'").fetchone() == (2,)
    assert con.execute("SELECT sum(rows) FROM shards WHERE tbl = 'sft'").fetchone() == (72,)
    con.close()


def test_same_seed_same_rows_other_seed_other_rows(tmp_path: Path) -> None:
    a = run_build(small_config(tmp_path / "a", max_seeds=2, variants=5))
    b = run_build(small_config(tmp_path / "b", max_seeds=2, variants=5, batch_size=3))
    c = run_build(small_config(tmp_path / "c", max_seeds=2, variants=5, seed=1))
    ids = {k: sorted(r["id"] for r in read_table(tmp_path / k, "sft")) for k in "abc"}
    assert a["totals"]["sft"] == b["totals"]["sft"] == c["totals"]["sft"] == 10
    assert ids["a"] == ids["b"]  # batching does not change the output
    assert ids["a"] != ids["c"]


def test_refuses_other_config_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    run_build(small_config(out, max_seeds=1, variants=3))
    with pytest.raises(DatasetConflictError, match="--overwrite"):
        run_build(small_config(out, max_seeds=1, variants=4))
    assert len(read_table(out, "sft")) == 3  # nothing lost
    run_build(small_config(out, max_seeds=1, variants=4), overwrite=True)
    assert len(read_table(out, "sft")) == 4


def test_refuses_non_dataset_directory(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetConflictError, match="not empty"):
        run_build(small_config(out, max_seeds=1, variants=2))
    assert (out / "notes.txt").read_text() == "keep me"
