"""A build killed with SIGKILL and rerun gives the same dataset as an uninterrupted build."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
from console import mathsynth_popen

ARGS = [
    "--max-seeds",
    "24",
    "--variants",
    "48",
    "--batch-size",
    "48",
    "--generators",
    "infinitymath,rise,formalize",
    # low enough that these variants have near duplicates, whose twins must match after a crash
    "--near-dup-threshold",
    "0.6",
]


def mathsynth(out: Path, env: dict[str, str]) -> subprocess.Popen:
    log = (out.parent / f"{out.name}.log").open("ab")
    return mathsynth_popen(
        "build",
        "--out",
        str(out),
        *ARGS,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so SIGKILL reaches the sandbox workers too
    )


def log_of(out: Path) -> str:
    return (out.parent / f"{out.name}.log").read_text(errors="replace")[-3000:]


def ids(out: Path, table: str) -> list[str]:
    return sorted(
        ds.dataset(out / table, format="parquet").to_table(columns=["id"])["id"].to_pylist()
    )


def near_duplicates(out: Path) -> list[str]:
    rejected = ds.dataset(out / "rejected", format="parquet").to_table(columns=["reason", "detail"])
    return sorted(
        d
        for r, d in zip(*(rejected[c].to_pylist() for c in ("reason", "detail")), strict=True)
        if r == "near_duplicate"
    )


def test_sigkill_then_rerun_matches_uninterrupted(
    tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    reference = tmp_path / "reference"
    assert mathsynth(reference, prefect_env).wait(timeout=300) == 0, log_of(reference)

    crashed = tmp_path / "crashed"
    proc = mathsynth(crashed, prefect_env)
    deadline = time.monotonic() + 240
    while not len(list((crashed / "sft").glob("part-*.parquet"))) >= 3:
        assert proc.poll() is None, log_of(crashed)
        assert time.monotonic() < deadline, "build never wrote three shards"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    # What a crash leaves behind is readable: every visible shard is a complete file.
    for shard in crashed.glob("*/part-*.parquet"):
        pq.read_metadata(shard)

    rerun = mathsynth(crashed, prefect_env)
    assert rerun.wait(timeout=300) == 0, log_of(crashed)
    for table in ("sft", "dpo", "formal"):
        got = ids(crashed, table)
        assert len(got) == len(set(got)), f"duplicates in {table}"
        assert got == ids(reference, table), table
    # Near duplicates are judged in batch order, so the same rows name the same twins.
    assert near_duplicates(crashed) == near_duplicates(reference) != []
    assert not list((crashed / ".tmp").iterdir())
