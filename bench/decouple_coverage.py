"""Decoupling coverage on GSM8K train: how many seeds become verified templates, and why not.

    .venv/bin/python -m bench.decouple_coverage [/work/shared/data/gsm8k/train.jsonl]

Prints coverage (decoupled / read), round-trip correctness (decoupled seeds whose program,
re-run in the sandbox on the original numbers, reproduces the gold answer: checked again here,
independently of `decouple_many`), throughput, and the top-10 failure reasons.
"""

from __future__ import annotations

import sys
import time
from collections import Counter

from mathsynth.generators.infinitymath.decouple import DecoupleFailure
from mathsynth.generators.infinitymath.decouple_check import decouple_many
from mathsynth.generators.seeds.readers import read_seeds
from mathsynth.numbers import format_answer
from mathsynth.seeds import Seed, SeedSpec
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob

DEFAULT = "/work/shared/data/gsm8k/train.jsonl"


def main(path: str) -> None:
    items = list(read_seeds(path))
    seeds = [s for s in items if isinstance(s, Seed)]
    reasons: Counter[str] = Counter(r.reason for r in items if not isinstance(r, Seed))
    with Sandbox() as sandbox:
        sandbox.run([SandboxJob(id="warm", code="x = 1")])
        start = time.perf_counter()
        outcomes = list(decouple_many(seeds, sandbox))
        elapsed = time.perf_counter() - start
        specs = [(seed, o) for seed, o in outcomes if isinstance(o, SeedSpec)]
        jobs = [SandboxJob(id=s.id, code=o.program, kwargs=o.default_values()) for s, o in specs]
        results = sandbox.run(jobs)
    reasons.update(o.reason for _, o in outcomes if isinstance(o, DecoupleFailure))
    correct = sum(
        r.status == "ok" and format_answer(r.result, spec.answer_type) == spec.answer
        for (_, spec), r in zip(specs, results, strict=True)
    )
    total = len(items)
    print(f"rows read:              {total}")
    print(f"decoupled:              {len(specs)} ({100 * len(specs) / total:.1f}%)")
    share = 100 * correct / max(1, len(specs))
    print(f"round-trip correct:     {correct}/{len(specs)} ({share:.1f}%)")
    print(f"decouple_many time:     {elapsed:.2f} s ({len(seeds) / elapsed:.0f} seeds/s)")
    print("top failure reasons:")
    for reason, count in reasons.most_common(10):
        print(f"  {reason:<28}{count:>6}  ({100 * count / total:.1f}%)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else DEFAULT)
