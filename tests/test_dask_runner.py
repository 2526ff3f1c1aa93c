"""`runner.kind: dask`: batches as Prefect tasks on a Dask cluster (prefect-dask), compared
with the thread runner on the same config; worker-local resources; resume across runners."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from dataset_checks import read_table

from mathsynth.config import load_config
from mathsynth.flows.build import run_build

pytestmark = [pytest.mark.usefixtures("prefect_harness"), pytest.mark.slow]

TABLES = ("sft", "dpo", "formal", "rejected")


def small(out: Path, **overrides: Any):
    values = {
        "out": out,
        "max_seeds": 3,
        "variants": 4,
        "batch_size": 4,
        "generators": "infinitymath,mugglemath,rise",
        "mugglemath_variants": 3,
        **overrides,
    }
    return load_config(**values)


def ids(out: Path) -> dict[str, list[str]]:
    return {t: sorted(r["id"] for r in read_table(out, t)) for t in TABLES}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """A 2-worker local cluster of processes, shared by the tests of this module."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as local,
        Client(local) as client,
    ):
        yield local, client


def drop_batches_after(out: Path, keep: int) -> int:
    """What a crash after `keep` committed batches leaves: later batches' manifest rows and
    shards gone. Returns how many batches were dropped."""
    con = duckdb.connect(str(out / "catalog.duckdb"))
    later = [
        b for (b,) in con.execute("SELECT batch FROM batches WHERE batch >= ?", [keep]).fetchall()
    ]
    con.execute("DELETE FROM batches WHERE batch >= ?", [keep])
    con.execute("DELETE FROM shards WHERE batch >= ?", [keep])
    con.close()
    for table in TABLES:
        for number in later:
            (out / table / f"part-{number:05d}.parquet").unlink(missing_ok=True)
    return len(later)


def test_dask_runner_rows_reuse_and_resume_across_runners(tmp_path: Path, cluster: Any) -> None:
    from mathsynth.executor.workers import context_key, open_counts

    # The same config on threads and on a local cluster the build starts itself.
    threads, dask = tmp_path / "threads", tmp_path / "dask"
    reference = run_build(small(threads))
    on_local = run_build(small(dask, **{"runner.kind": "dask", "runner.workers": 2}))
    assert reference["totals"] == on_local["totals"]
    assert reference["totals"]["sft"] > 0 and reference["totals"]["dpo"] > 0
    assert reference["generators"] == on_local["generators"]
    expected = ids(threads)
    assert ids(dask) == expected

    # Dask "crashed" after 2 batches: threads resume it.
    dropped = drop_batches_after(dask, 2)
    assert dropped > 0
    resumed = run_build(small(dask))
    assert resumed["batches_skipped"] == reference["batches"] - dropped
    assert ids(dask) == expected

    # Threads "crashed" after 1 batch: a running cluster resumes it.
    local, client = cluster
    dropped = drop_batches_after(threads, 1)
    on_cluster = {"runner.kind": "dask", "runner.address": local.scheduler_address}
    resumed = run_build(small(threads, **on_cluster))
    assert resumed["batches_skipped"] == reference["batches"] - dropped
    assert ids(threads) == expected

    # Each worker process opened the dataset's resources once, however many batches it ran.
    key = context_key(small(threads))
    opened = client.run(open_counts)
    counts = [per_worker.get(key, 0) for per_worker in opened.values()]
    assert sum(counts) >= 1 and max(counts) == 1, opened
    assert resumed["batches"] - resumed["batches_skipped"] > max(counts)
