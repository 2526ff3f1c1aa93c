"""Answer checker throughput and hang resistance.

    .venv/bin/python bench/answer_checks.py [--pairs 3000] [--fuzz 10000] [--workers N]

Prints, measured side by side in one run: pairs/s on a realistic mix with cold gold (first
sight of each gold) and cached gold (same pairs again), the fast-path share, and the number of
hangs over a fuzz set with pathological expressions (a hang: a call that does not end within
its timeout plus respawn slack, or a pathological pair judged `correct`).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from fractions import Fraction

from mathsynth.verifiers.answers import AnswerChecker

_SYMBOLIC = [
    ("x^2+2x+1", ["(x+1)^2", "x^2+2x", "\\boxed{(x+1)^2}"]),
    ("\\frac{\\sqrt{2}}{2}", ["\\frac{1}{\\sqrt{2}}", "\\sqrt{2}", "0.707107"]),
    ("2\\pi", ["2\\pi", "\\pi", "6.283185"]),
    ("(1,2)", ["The final answer is $(1,2)$.", "(2,1)", "$(1, 2)$"]),
    ("\\{1,2,3\\}", ["\\{3,2,1\\}", "\\{1,2\\}", "\\{1,2,3\\}"]),
    ("3\\sqrt{5}", ["\\sqrt{45}", "5\\sqrt{3}", "3\\sqrt(5)"]),
    ("y=2x+1", ["2x-y+1=0", "y=2x-1", "y = 1 + 2x"]),
    ("[0, 1)", ["[0,1)", "(0,1)", "0 \\le x < 1"]),
    ("\\frac{1}{2004!}", ["\\frac{1}{2006!}", "\\frac{1}{2004!}", "0"]),
    ("e^{-1}", ["\\frac{1}{e}", "e", "0.367879"]),
]


def _number_pair(rng: random.Random) -> tuple[str, str]:
    kind = rng.randrange(6)
    if kind == 0:
        n = rng.randint(0, 10**6)
        return str(n), rng.choice([f"{n:,}", str(n), str(n + 1), f"\\boxed{{{n}}}", f"{n} apples"])
    if kind == 1:
        q = Fraction(rng.randint(1, 99), rng.randint(2, 99))
        return f"\\frac{{{q.numerator}}}{{{q.denominator}}}", rng.choice(
            [
                f"{q.numerator}/{q.denominator}",
                f"{float(q):.3f}",
                f"\\dfrac{{{q.numerator}}}{{{q.denominator}}}",
            ]
        )
    if kind == 2:
        cents = rng.randint(0, 10**6)
        return f"{cents / 100:.2f}", rng.choice(
            [f"${cents / 100:,.2f}", f"\\${cents // 100}", f"{cents / 100}"]
        )
    if kind == 3:
        p = rng.randint(1, 99)
        return f"{p}\\%", rng.choice([f"{p}%", str(p), f"{p / 100}", f"{p + 1}%"])
    if kind == 4:
        d = rng.randint(1, 9999) / 100
        return str(d), rng.choice([str(d), f"{d:.1f}", f"$\\boxed{{{d}}}$"])
    n = rng.randint(-500, 500)
    return str(n), rng.choice([str(n), str(-n), f"The answer is {n}."])


def realistic_mix(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """70 % number answers (GSM8K-like), 30 % symbolic (MATH-like) with repeating golds."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        if rng.random() < 0.7:
            pairs.append(_number_pair(rng))
        else:
            gold, preds = rng.choice(_SYMBOLIC)
            pairs.append((gold, rng.choice(preds)))
    return pairs


_PATHOLOGICAL = [
    "2^{2^{2^{2^{2^{2}}}}}",
    "10^{10^{10^{10}}}",
    "(10^{8})!",
    "((10^{6})!)!",
    "9^{9^{9^{9}}}",
    "\\frac{1}{" * 60 + "2" + "}" * 60,
    "(" * 200 + "1" + ")" * 200,
    "\\sqrt{" * 50 + "2" + "}" * 50,
    "x^{" * 40 + "2" + "}" * 40,
    "1000000000!",
]


def fuzz_set(n: int, n_pathological: int, seed: int = 1) -> tuple[list[tuple[str, str]], list[int]]:
    """Random answers, garbage strings and pathological expressions on either side."""
    rng = random.Random(seed)
    alphabet = "0123456789+-*/^{}()[]\\frac\\sqrt xy=.,%$ !"
    pairs = realistic_mix(n - n_pathological, seed)
    for i in range(0, len(pairs), 3):
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 30)))
        pairs[i] = (pairs[i][0], junk) if i % 2 else (junk, pairs[i][1])
    patho_at = sorted(rng.sample(range(n), n_pathological))
    for i in patho_at:
        bad = rng.choice(_PATHOLOGICAL)
        pairs.insert(i, (bad, "1") if rng.random() < 0.5 else ("1", bad))
    return pairs, patho_at


def _rate(checker: AnswerChecker, pairs: list[tuple[str, str]]) -> float:
    start = time.perf_counter()
    checker.check_many(pairs)
    return len(pairs) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark; argv defaults to no flags so other benches can call main()."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--fuzz", type=int, default=10_000)
    ap.add_argument("--pathological", type=int, default=40)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--timeout", type=float, default=1.0)
    args = ap.parse_args(argv or [])

    pairs = realistic_mix(args.pairs)
    with AnswerChecker(timeout_s=2.0, workers=args.workers) as checker:
        checker.check("x^2", "x*x")  # start and warm the workers outside the timings
        fast_before, worker_before = checker.fast_path_hits, checker.worker_checks
        cold = _rate(checker, pairs)
        fast = checker.fast_path_hits - fast_before
        share = fast / (fast + checker.worker_checks - worker_before)
        cached = _rate(checker, pairs)
    print(f"answer checks, realistic mix of {len(pairs)} pairs ({checker.n_workers} workers)")
    print(f"  cold gold   : {cold:8.0f} pairs/s")
    print(f"  cached gold : {cached:8.0f} pairs/s   (x{cached / cold:.2f} vs cold)")
    print(f"  fast path   : {share:8.1%} of pairs decided without math-verify")

    fuzz, patho_at = fuzz_set(args.fuzz, args.pathological)
    hangs = wrong = 0
    slack = args.timeout + 5.0  # kill + reap; the respawn happens after the verdict
    with AnswerChecker(timeout_s=args.timeout, workers=args.workers) as checker:
        start = time.perf_counter()
        patho = set(patho_at)
        normal = [p for i, p in enumerate(fuzz) if i not in patho]
        for chunk in range(0, len(normal), 500):
            checker.check_many(normal[chunk : chunk + 500])
        for i in patho_at:
            t0 = time.perf_counter()
            v = checker.check(*fuzz[i])
            hangs += time.perf_counter() - t0 > slack
            wrong += v.verdict == "correct"
        elapsed = time.perf_counter() - start
        restarts = checker.restarts
    print(f"fuzz: {len(fuzz)} pairs ({len(patho_at)} pathological), timeout {args.timeout:g}s")
    print(f"  hangs: {hangs}   pathological judged correct: {wrong}   worker kills: {restarts}")
    print(f"  wall: {elapsed:.1f}s")


if __name__ == "__main__":
    main(sys.argv[1:])
