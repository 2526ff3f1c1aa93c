"""RISE yield on GSM8K-derived verified records.

Builds up to N verified Problems from GSM8K train solutions (every `<<expr=value>>` calculator
annotation must recompute exactly; annotations become plain step text and `#### N` becomes
"The answer is N."), runs the rule-based RISE stage over them and prints: share with a valid
pair, median edit span / rejected length, error type and consequence distribution, rejection
reasons, and throughput. Each pair's invariants are re-checked here (rejected differs, shares
the prefix before the edited step, span inside the edited step).

    .venv/bin/python bench/rise_yield.py [--gsm8k /work/shared/data/gsm8k/train.jsonl] [-n 1000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter
from pathlib import Path

from mathsynth.generators.common.annotations import remove_calculator_annotations
from mathsynth.generators.common.arithmetic import ExpressionError
from mathsynth.generators.rise.offline import RiseErrorInjection
from mathsynth.generators.rise.steps import evaluate_text
from mathsynth.numbers import parse_number
from mathsynth.records import PreferencePair, Problem, Rejection, Verification
from mathsynth.storage.jsonl import iter_jsonl

DEFAULT_GSM8K = Path("/work/shared/data/gsm8k/train.jsonl")
_ANNOTATION_MARK = "<<"


def _annotations_hold(answer: str) -> bool:
    """True when every calculator annotation `<<expr=value>>` recomputes to its value."""
    rest = answer
    found = False
    while _ANNOTATION_MARK in rest:
        inner, _, rest = rest.split(_ANNOTATION_MARK, 1)[1].partition(">>")
        expr, eq, value = inner.partition("=")
        if not eq:
            return False
        try:
            if evaluate_text(expr) != parse_number(value.strip()):
                return False
        except (ExpressionError, ValueError, ZeroDivisionError):
            return False
        found = True
    return found


def gsm8k_problems(path: Path, limit: int) -> list[Problem]:
    problems: list[Problem] = []
    for _, row in iter_jsonl(path):
        body, _, final = row["answer"].rpartition("####")
        if not _annotations_hold(body):
            continue
        steps = remove_calculator_annotations(body.strip())
        final = final.strip()
        problems.append(
            Problem(
                generator="gsm8k",
                method="seed",
                seed_id=f"gsm8k-train-{len(problems)}",
                question=row["question"],
                solution=f"{steps}\nThe answer is {final}.",
                answer=final,
                verification=Verification("verified", "annotations", "all annotations recompute"),
            )
        )
        if len(problems) >= limit:
            break
    return problems


def _pair_ok(pair: PreferencePair) -> bool:
    chosen_lines = pair.chosen_text.split("\n")
    rejected_lines = pair.rejected_text.split("\n")
    prefix = "\n".join(chosen_lines[: pair.step_index])
    line_start = len(prefix) + (1 if pair.step_index else 0)
    line_end = line_start + len(rejected_lines[pair.step_index])
    return (
        pair.rejected_text != pair.chosen_text
        and pair.rejected_text.startswith(prefix)
        and pair.chosen_text[: pair.edit_start] == pair.rejected_text[: pair.edit_start]
        and line_start <= pair.edit_start < pair.edit_end <= line_end
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gsm8k", type=Path, default=DEFAULT_GSM8K)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    problems = gsm8k_problems(args.gsm8k, args.n)
    stage = RiseErrorInjection(seed=args.seed)
    started = time.perf_counter()
    out = [r for r in stage.run(problems) if not isinstance(r, Problem)]
    elapsed = time.perf_counter() - started

    pairs = [r for r in out if isinstance(r, PreferencePair)]
    rejections = Counter(r.reason for r in out if isinstance(r, Rejection))
    spans = [(p.edit_end - p.edit_start) / len(p.rejected_text) for p in pairs]
    broken = sum(not _pair_ok(p) for p in pairs)

    print(f"input: {len(problems)} verified GSM8K-derived problems ({args.gsm8k})")
    print(f"valid pairs: {len(pairs)}/{len(problems)} = {len(pairs) / len(problems):.1%}")
    print(f"median edit span / rejected length: {statistics.median(spans):.1%}")
    print(f"invariant violations: {broken}")
    print(f"rejections: {dict(rejections.most_common())}")
    for label, counts in (
        ("error types", Counter(p.error_type for p in pairs)),
        ("consequence", Counter(p.provenance["consequence"] for p in pairs)),
    ):
        shares = ", ".join(f"{k} {v / len(pairs):.1%}" for k, v in counts.most_common())
        print(f"{label}: {shares}")
    print(f"throughput: {len(problems) / elapsed:,.0f} problems/s ({elapsed:.2f} s)")


if __name__ == "__main__":
    main()
