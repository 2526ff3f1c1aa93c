"""Decontamination throughput against benchmarks of GSM8K-test and MATH-500 size, measured
side by side in one run on this machine.

    .venv/bin/python -m bench.decontam [--gsm8k PATH] [--rows N]

No GSM8K test or MATH-500 file ships with the project and nothing is downloaded, so the two
benchmarks are built at run time with the real sets' sizes from GSM8K *train*
(`--gsm8k`, default ../shared/data/gsm8k/train.jsonl next to the repository, MIT):

  - "gsm8k-test-size": 1,319 train questions, as they are;
  - "math500-size":    500 further train questions written MATH-style (numbers in `$...$`,
                       `\\frac{a}{b}` for fractions), the LaTeX-heavy text MATH-500 has.

Without that file, both are synthesised from the bundled seed library (instantiated with
drawn numbers). The rows checked are the remaining questions (clean, apart from GSM8K's own
near-copies) plus number-changed and reworded variants of benchmark items, cycled to `--rows`.

Prints index build time, rows/s for one process (what a build batch gets: batches run in
threads, so the check holds the GIL; also per CPU-second, which other load on a shared
machine does not change) and for one process per core (2 on the dev machine), the ratio to
the 5,000 rows/s goal, and per-method hits on the variants and on clean rows.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import re
import time
from collections import Counter
from pathlib import Path

from mathsynth.verifiers.decontam import METHODS, ContaminationIndex

GOAL = 5000
DEFAULT_GSM8K = Path(__file__).resolve().parents[2] / "shared" / "data" / "gsm8k" / "train.jsonl"
_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def gsm8k_questions(path: Path) -> list[str]:
    return [json.loads(line)["question"] for line in path.open(encoding="utf-8")]


def bundled_questions(n: int, rng: random.Random) -> list[str]:
    """Questions from the bundled seed templates with freshly drawn numbers."""
    from mathsynth.generators.common.templates import fill
    from mathsynth.generators.seeds.library import load_library

    specs = list(load_library())
    out = []
    for i in range(n):
        spec = specs[i % len(specs)]
        values = {k: rng.randint(2, 99) for k in spec.variables}
        out.append(f"({i}) " + fill(spec.question, values))
    return out


def math_style(question: str) -> str:
    text = re.sub(r"(\d+)/(\d+)", r"$\\frac{\1}{\2}$", question)
    return re.sub(r"(?<![{$\d])(\d+(?:\.\d+)?)(?![}\d])", r"$\1$", text)


def variants(items: list[str], rng: random.Random) -> list[str]:
    """Number-changed copies, and number-changed copies with a word inserted every 12."""
    out = []
    for text in items:
        changed = _NUMBER.sub(lambda m: str(int(float(m.group())) + rng.randint(1, 9)), text)
        out.append(changed)
        words = changed.split()
        for i in range(len(words) - 12, 0, -12):
            words.insert(i, "indeed")
        out.append(" ".join(words))
    return out


def _check_all(args: tuple[ContaminationIndex, list[str]]) -> Counter[str]:
    index, rows = args
    hits: Counter[str] = Counter()
    for text in rows:
        found = index.check(text)
        if found is not None:
            hits["any"] += 1
            hits.update(found.hits.keys())
    return hits


_INDEX: ContaminationIndex | None = None


def _check_in_worker(rows: list[str]) -> Counter[str]:
    assert _INDEX is not None
    return _check_all((_INDEX, rows))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k", type=Path, default=DEFAULT_GSM8K)
    parser.add_argument("--rows", type=int, default=30_000)
    args = parser.parse_args()
    rng = random.Random(0)

    if args.gsm8k.is_file():
        source = f"GSM8K train ({args.gsm8k})"
        questions = gsm8k_questions(args.gsm8k)
    else:
        source = "the bundled seed library (no GSM8K file found)"
        questions = bundled_questions(8000, rng)
    gsm8k_size = questions[:1319]
    math500_size = [math_style(q) for q in questions[1319:1819]]
    clean = questions[1819:]
    dirty = variants(gsm8k_size[:300] + math500_size[:100], rng)
    rows = [*clean, *dirty]
    rows = (rows * (args.rows // len(rows) + 1))[: args.rows]
    print(
        f"benchmarks built from {source}: gsm8k-test-size {len(gsm8k_size):,} items, "
        f"math500-size {len(math500_size):,} items"
    )

    start = time.perf_counter()
    index = ContaminationIndex(
        [("gsm8k-test-size", [(str(i), q) for i, q in enumerate(gsm8k_size)]),
         ("math500-size", [(str(i), q) for i, q in enumerate(math500_size)])]
    )  # fmt: skip
    print(f"index: {time.perf_counter() - start:.2f} s")

    start, cpu = time.perf_counter(), time.process_time()
    _check_all((index, rows))
    one = len(rows) / (time.perf_counter() - start)
    one_cpu = len(rows) / (time.process_time() - cpu)

    global _INDEX
    _INDEX = index  # forked workers inherit the index instead of rebuilding it
    cores = os.cpu_count() or 1
    chunks = [rows[i::cores] for i in range(cores)]
    with multiprocessing.get_context("fork").Pool(cores) as pool:
        pool.map(_check_in_worker, [rows[:cores]] * cores)  # workers started before timing
        start = time.perf_counter()
        pool.map(_check_in_worker, chunks)
        parallel = len(rows) / (time.perf_counter() - start)

    load = os.getloadavg()[0]
    print(f"rows checked: {len(rows):,} (three methods each); load average {load:.1f}")
    print(
        f"one process:   {one:9,.0f} rows/s  ({one / GOAL:.2f}x the {GOAL:,} rows/s goal; "
        f"{one_cpu:,.0f} rows per CPU-second)"
    )
    print(
        f"{cores} processes:   {parallel:9,.0f} rows/s  ({parallel / GOAL:.2f}x the goal, "
        f"{parallel / one:.2f}x one process)"
    )
    for name, texts in (("variants", dirty), ("clean rows", clean)):
        hits = _check_all((index, texts))
        by_method = ", ".join(f"{m} {hits[m]:,}" for m in METHODS)
        print(f"{name}: {len(texts):,} checked, {hits['any']:,} flagged ({by_method})")


if __name__ == "__main__":
    main()
