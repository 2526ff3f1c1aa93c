"""Near-duplicate removal at build end, at 20k / 50k / 200k sft rows, side by side in one run.

    .venv/bin/python -m bench.neardup [--gsm8k PATH] [--sizes 20000,50000,200000]

Each size is a dataset of InfinityMATH-like rows made at run time: GSM8K *train* questions
(`--gsm8k`, default ../shared/data/gsm8k/train.jsonl next to the repository; else the
bundled seed templates) with their numbers redrawn, in shards of 1,000 rows as a build
writes them. For each size, in a fresh process, prints the pass's rows/s, peak RSS, how many
rows shared an LSH band (candidates) and were dropped, and the time of a rerun, which reuses
the signatures kept in the catalog.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

from bench.decontam import DEFAULT_GSM8K, bundled_questions, gsm8k_questions

_NUMBER = re.compile(r"\d+")


def make_dataset(out: Path, rows: int, questions: list[str]) -> None:
    from mathsynth.records import Problem, Verification
    from mathsynth.storage.catalog import Catalog
    from mathsynth.storage.shards import write_batch_shards

    rng = random.Random(rows)
    catalog = Catalog(out)
    catalog.init("bench", {}, overwrite=False)
    for shard in range(rows // 1000):
        batch = []
        for i in range(1000):
            base = questions[(shard * 1000 + i) % len(questions)]
            text = _NUMBER.sub(lambda m: str(int(m.group()) * rng.randint(1, 9) + 1), base)
            batch.append(
                Problem(
                    "infinitymath", "instantiate", "s", text, "x", str(i),
                    verification=Verification("verified", "exec", "ok"),
                )
            )  # fmt: skip
        info = write_batch_shards(out, shard, batch)
        catalog.record_batch(
            shard, generator="infinitymath", tasks=1000, run_id="bench", seconds=0.0,
            counts={"sft": 1000}, stats={},
            shards=[(t, str(s.path.relative_to(out)), s.rows, s.bytes) for t, s in info.items()],
        )  # fmt: skip


def measure(out: Path) -> dict[str, float]:
    from mathsynth.config import load_config
    from mathsynth.executor.publish import drop_near_duplicates
    from mathsynth.storage.catalog import Catalog

    ctx = SimpleNamespace(config=load_config(out=out), out=out)
    catalog = Catalog(out)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu = time.perf_counter(), time.process_time()
    figures = drop_near_duplicates(ctx, catalog)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    drop_near_duplicates(ctx, catalog)
    rerun = time.perf_counter() - start
    return {
        "rows": figures["rows_checked"],
        "candidates": figures["candidates"],
        "dropped": figures["dropped"].get("sft", 0),
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "rerun_seconds": rerun,
        "rss_before_mib": before / 1024,
        "peak_rss_mib": peak / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k", type=Path, default=DEFAULT_GSM8K)
    parser.add_argument("--sizes", default="20000,50000,200000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process
    args = parser.parse_args()
    if args.gsm8k.is_file():
        questions, source = gsm8k_questions(args.gsm8k), f"GSM8K train ({args.gsm8k})"
    else:
        questions, source = bundled_questions(8000, random.Random(0)), "bundled seed templates"
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "ds"
            make_dataset(out, args.one, questions)
            print(json.dumps(measure(out)))
        return
    print(f"rows: {source}, numbers redrawn; one fresh process per size")
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        proc = subprocess.run(
            [sys.executable, "-m", "bench.neardup", "--one", str(size), "--gsm8k", str(args.gsm8k)],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(r)
        print(
            f"{r['rows']:>8,} rows: {r['rows'] / r['seconds']:7,.0f} rows/s "
            f"({r['seconds']:.1f} s, {r['rows'] / r['cpu_seconds']:,.0f} per CPU-second), "
            f"peak RSS {r['peak_rss_mib']:.0f} MiB "
            f"(before the pass {r['rss_before_mib']:.0f}), {r['candidates']:,} candidates, "
            f"{r['dropped']:,} dropped; rerun {r['rerun_seconds']:.1f} s (signatures reused)"
        )
    first, last = results[0], results[-1]
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(
        f"{last['rows'] // first['rows']}x the rows: "
        f"{last['seconds'] / first['seconds']:.1f}x the time, "
        f"{last['peak_rss_mib'] / first['peak_rss_mib']:.2f}x the peak RSS"
    )


if __name__ == "__main__":
    main()
