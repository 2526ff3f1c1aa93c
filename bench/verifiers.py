"""Sandbox throughput, measured side by side in one run on this machine.

    .venv/bin/python bench/verifiers.py [--programs N]

Prints programs/second for (1) the baseline: one fresh `python` process per program
(human-eval style), (2) the sandbox on the same trivial programs as untrusted jobs (one
forked process each, the default for anything an LLM wrote or a dataset supplied), and their
ratio, (3) untrusted sympy programs (exact arithmetic, and `sympy.solve()`), (4) the same
programs registered as trusted (the bundled library's own programs: batched on shared
workers) and the gain that batching buys. Ends with the answer-checker benchmark
(bench/answer_checks.py) when that module exists.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mathsynth.verifiers.sandbox import Sandbox, SandboxJob

TRIVIAL = "def solution(a, b):\n    c = a * b\n    return c + a"
# what an instantiated InfinityMATH program does with sympy: exact rational arithmetic
SYMPY_ARITH = (
    "import sympy\n"
    "def solution(a, b):\n"
    "    price = sympy.Rational(a, 4) * b\n"
    "    share = sympy.Rational(price, a + b)\n"
    "    return price - share + sympy.sqrt(b * b)\n"
)
# a heavier one: solve a quadratic symbolically
SYMPY_SOLVE = (
    "import sympy\n"
    "def solution(a, b):\n"
    "    x = sympy.Symbol('x')\n"
    "    roots = sympy.solve(x**2 - (a + b) * x + a * b, x)\n"
    "    return sympy.Rational(sum(roots), a)\n"
)


def baseline_per_second(n: int) -> float:
    """One fresh interpreter per program, as a human-eval style harness does."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "prog.py"
        script.write_text(TRIVIAL + "\nprint(solution(3, 4))\n")
        start = time.perf_counter()
        for _ in range(n):
            subprocess.run([sys.executable, str(script)], check=True, capture_output=True)
        return n / (time.perf_counter() - start)


def in_process_per_second(code: str, n: int) -> float:
    """The same programs exec'd in this process, one core, no isolation: the floor."""
    namespace: dict[str, object] = {}
    exec(code, namespace)
    solution = namespace["solution"]
    start = time.perf_counter()
    for i in range(n):
        solution(a=i + 1, b=3)  # type: ignore[operator]
    return n / (time.perf_counter() - start)


def sandbox_per_second(sandbox: Sandbox, code: str, n: int, *, distinct: bool = False) -> float:
    """Jobs per second; `distinct`: every job a different program (a comment tells them
    apart), so no two untrusted jobs may share a process, the sandbox's worst case."""
    # distinct kwargs for every job, so sympy's cache cannot turn the run into lookups
    jobs = [
        SandboxJob(
            id=str(i), code=code + (f"\n# {i}" if distinct else ""), kwargs={"a": i + 1, "b": 3}
        )
        for i in range(n)
    ]
    sandbox.run([SandboxJob(id="warm", code=code, kwargs={"a": -1, "b": 3})] * 20)
    start = time.perf_counter()
    results = sandbox.run(jobs)
    elapsed = time.perf_counter() - start
    bad = [r for r in results if r.status != "ok"]
    if bad:
        raise SystemExit(f"benchmark program failed: {bad[0].status} {bad[0].error}")
    return n / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=3_000, help="untrusted trivial programs")
    parser.add_argument("--baseline", type=int, default=100, help="fresh-python programs")
    parser.add_argument("--sympy", type=int, default=1_000, help="untrusted sympy programs")
    parser.add_argument("--trusted", type=int, default=20_000, help="trusted trivial programs")
    args = parser.parse_args()

    cores = os.cpu_count()
    base = baseline_per_second(args.baseline)
    arith_local = in_process_per_second(SYMPY_ARITH, args.sympy // 4)
    solve_local = in_process_per_second(SYMPY_SOLVE, args.sympy // 4)
    with Sandbox(workers=None, timeout_s=5.0) as sandbox:
        isolation = sandbox.isolation
        trivial = sandbox_per_second(sandbox, TRIVIAL, args.programs, distinct=True)
        arith = sandbox_per_second(sandbox, SYMPY_ARITH, args.sympy, distinct=True)
        solve = sandbox_per_second(sandbox, SYMPY_SOLVE, args.sympy, distinct=True)
        variants = sandbox_per_second(sandbox, TRIVIAL, args.programs)
        solve_variants = sandbox_per_second(sandbox, SYMPY_SOLVE, args.sympy)
    trusted_programs = (TRIVIAL, SYMPY_ARITH, SYMPY_SOLVE)
    with Sandbox(workers=None, timeout_s=5.0, trusted_programs=trusted_programs) as sandbox:
        trusted_trivial = sandbox_per_second(sandbox, TRIVIAL, args.trusted)
        trusted_arith = sandbox_per_second(sandbox, SYMPY_ARITH, args.sympy * 3)
        trusted_solve = sandbox_per_second(sandbox, SYMPY_SOLVE, args.sympy * 3)
    print(f"cores: {cores}, sandbox workers: {sandbox.workers}, isolation: {isolation}")
    print(f"fresh python per program (baseline):     {base:10.1f} programs/s")
    print("untrusted, every job a different program (one forked process each):")
    print(f"  trivial programs:                       {trivial:10.1f} programs/s")
    print(f"    ratio sandbox / baseline:             {trivial / base:10.1f}x  (target >= 25x)")
    print(f"  sympy arithmetic programs:              {arith:10.1f} programs/s")
    print(f"  sympy solve() programs:                 {solve:10.1f} programs/s (target >= 300)")
    print("untrusted, one program on many inputs (its jobs share its own process):")
    print(f"  trivial program:                        {variants:10.1f} jobs/s")
    print(f"    ratio sandbox / baseline:             {variants / base:10.1f}x  (target >= 25x)")
    print(
        f"  sympy solve() program:                  {solve_variants:10.1f} jobs/s (target >= 300)"
    )
    print("trusted (bundled library programs, batched on shared workers):")
    print(f"  trivial programs:                       {trusted_trivial:10.1f} programs/s")
    print(f"    gain over untrusted:                  {trusted_trivial / trivial:10.1f}x")
    print(f"  sympy arithmetic programs:              {trusted_arith:10.1f} programs/s")
    print(f"    gain over untrusted:                  {trusted_arith / arith:10.1f}x")
    print(f"  sympy solve() programs:                 {trusted_solve:10.1f} programs/s")
    print(f"    gain over untrusted:                  {trusted_solve / solve:10.1f}x")
    print("in-process on 1 core, no sandbox (the floor):")
    print(f"  sympy arithmetic programs:              {arith_local:10.1f} programs/s")
    print(f"  sympy solve() programs:                 {solve_local:10.1f} programs/s")

    answers = Path(__file__).with_name("answer_checks.py")
    if answers.exists():
        spec = importlib.util.spec_from_file_location("answer_checks", answers)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        print()
        module.main()


if __name__ == "__main__":
    main()
