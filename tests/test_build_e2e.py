"""The whole path on the embedded default: seeds → InfinityMATH → sandbox → shards → catalog,
run as a real Prefect flow; resume, determinism, config conflicts and re-execution."""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest
from dataset_checks import assert_answers_reproduce, read_table

from mathsynth.config import load_config
from mathsynth.errors import DatasetConflictError
from mathsynth.flows.build import run_build
from mathsynth.generators.common.instantiate import answer_line

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


def test_build_resume_and_reexecution(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    report = run_build(small_config(out))
    rows = read_table(out, "sft")
    # 6 seeds x 12 variants; the near duplicates among them are in rejected/, naming a twin.
    near = [r for r in read_table(out, "rejected") if r["reason"] == "near_duplicate"]
    assert report["totals"]["sft"] == len(rows) == 6 * 12 - len(near)
    assert report["near_duplicates"]["dropped"].get("sft", 0) == len(near)
    assert len({r["id"] for r in rows}) == len(rows)
    assert all(r["verification"]["status"] == "verified" for r in rows)
    # exact (LaTeX) answers are also judged by the answer checker
    assert all(
        r["verification"]["checker"]
        == (
            "exec+answer_check" if json.loads(r["provenance"])["answer_type"] == "exact" else "exec"
        )
        for r in rows
    )
    assert all(r["question"] and "{" not in r["question"] for r in rows)
    assert all(
        r["solution"].splitlines()[-1]
        == answer_line(r["answer"], json.loads(r["provenance"])["answer_type"])
        for r in rows
    )
    prov = json.loads(rows[0]["provenance"])
    assert prov["config_hash"] == small_config(out).content_hash()

    # Re-execute a sample outside the pipeline: a plain interpreter, not our sandbox.
    assert_answers_reproduce(rows[::7])

    # Rerun: every batch skipped, identical rows, no duplicates.
    again = run_build(small_config(out))
    assert again["batches_skipped"] == again["batches"]
    assert sorted(r["id"] for r in read_table(out, "sft")) == sorted(r["id"] for r in rows)

    con = duckdb.connect(str(out / "catalog.duckdb"), read_only=True)
    assert con.execute("SELECT count(*) FROM builds WHERE status = 'completed'").fetchone() == (2,)
    assert con.execute("SELECT sum(rows) FROM shards WHERE tbl = 'sft'").fetchone() == (len(rows),)
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


GSM8K_STYLE = [
    {
        "id": "bakery-1",
        "question": "A bakery sells 18 muffins each day. How many muffins does it sell in 5 days?",
        "answer": "It sells 18 * 5 = <<18*5=90>>90 muffins.\n#### 90",
    },
    {
        "id": "books-1",
        "question": "Lena has 40 books. She gives away 15 books. How many books are left?",
        "answer": "She has 40 - 15 = <<40-15=25>>25 books left.\n#### 25",
    },
    {"id": "broken-1", "question": "How many pens are there?"},
]


def test_dataset_seeds_build(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("\n".join(json.dumps(row) for row in GSM8K_STYLE) + "\n")
    out = tmp_path / "ds"
    run_build(load_config(seeds=str(seeds), out=out, variants=6, generators="infinitymath"))
    rows = read_table(out, "sft")
    assert {r["seed_id"] for r in rows} == {"bakery-1", "books-1"}
    assert len(rows) == 12
    for row in rows:
        variables = json.loads(row["variables"])
        numbers = [int(n) for n in re.findall(r"\d+", row["question"])]
        # Independent recomputation from the numbers printed in the question.
        expected = (
            numbers[0] * numbers[1] if row["seed_id"] == "bakery-1" else numbers[0] - numbers[1]
        )
        assert row["answer"] == str(expected), (row["question"], variables)
        assert row["solution"].rstrip().endswith(f"The answer is {expected}.")
    rejected = read_table(out, "rejected")
    broken = [r for r in rejected if r["stage"] == "read_seeds"]
    assert len(broken) == 1 and "seeds.jsonl:3" in broken[0]["detail"]


def test_scheduled_build_and_ui_artifacts(tmp_path: Path) -> None:
    """The deployment entry point takes JSON parameters; the UI gets keyed artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    from mathsynth.flows.build import scheduled_build

    out = tmp_path / "scheduled"
    report = scheduled_build(
        overrides={"out": str(out), "max_seeds": 1, "variants": 3, "generators": "infinitymath"}
    )
    assert report["totals"]["sft"] == 3
    keys = ["build-progress", "build-generators", "build-report", "generator-infinitymath"]
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    assert {a.key for a in artifacts} == set(keys)
    progress = [a for a in artifacts if a.key == "build-progress"]
    assert any(a.data == 100.0 for a in progress)
