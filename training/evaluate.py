"""`mathsynth eval`: answer a benchmark with a model, grade each answer with the answer
checker, and score the run as accuracy with a 95% Wilson confidence interval.

Grading: the final answer is extracted from the completion (the last `\\boxed{}`, else a
"The answer is X" / "#### X" line) and judged against the gold answer by
`verifiers.answers.AnswerChecker` (exact numbers first, math-verify otherwise). A completion
with no final answer, or one the checker cannot decide, counts as not correct; both are
counted apart in the summary.

Per-item results go to a JSONL file (one row per item, in benchmark order) and the summary
to a JSON file beside it (`<results>.summary.json`).
"""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mathsynth.generators.llm.errors import ReplyParseError
from mathsynth.generators.llm.parsing import extract_final_answer
from mathsynth.storage.jsonl import write_jsonl
from mathsynth.storage.output_dir import check_writable
from mathsynth.train_settings import EvalSettings
from mathsynth.training.benchmark import BenchmarkItem, read_benchmark
from mathsynth.training.generate import Progress, generate
from mathsynth.verifiers.answers import AnswerChecker

Z_95 = 1.959963984540054  # two-sided 95% quantile of the standard normal


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (well-behaved at 0 and n, unlike
    the normal approximation); (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    # At 0 and n the bounds are exactly 0 and 1; the formula leaves rounding dust there.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass
class Graded:
    id: str
    question: str
    gold: str
    completion: str
    pred: str | None
    verdict: str  # correct | incorrect | no_answer | error (the checker could not decide)
    detail: str

    @property
    def correct(self) -> bool:
        return self.verdict == "correct"


def grade(
    items: list[BenchmarkItem], completions: list[str], timeout_s: float = 2.0
) -> list[Graded]:
    """One Graded per item, in order."""
    preds: list[str | None] = []
    missing: dict[int, str] = {}  # item index -> why no final answer was found
    for i, text in enumerate(completions):
        try:
            preds.append(extract_final_answer(text))
        except ReplyParseError as exc:
            preds.append(None)
            missing[i] = exc.detail
    pairs = [(item.answer, pred) for item, pred in zip(items, preds, strict=True) if pred]
    with AnswerChecker(timeout_s=timeout_s) as checker:
        verdicts = iter(checker.check_many(pairs))
    graded = []
    for i, (item, text, pred) in enumerate(zip(items, completions, preds, strict=True)):
        if pred is None:
            verdict, detail = "no_answer", missing[i]
        else:
            v = next(verdicts)
            verdict, detail = v.verdict, v.detail
        graded.append(Graded(item.id, item.question, item.answer, text, pred, verdict, detail))
    return graded


@dataclass
class EvalSummary:
    model: str
    benchmark: str
    n: int
    correct: int
    accuracy: float
    ci_low: float
    ci_high: float
    verdicts: dict[str, int]
    skipped_rows: int
    backend: str
    seconds: float
    results: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarise(graded: list[Graded], **fields: Any) -> EvalSummary:
    n = len(graded)
    correct = sum(g.correct for g in graded)
    low, high = wilson_interval(correct, n)
    return EvalSummary(
        n=n,
        correct=correct,
        accuracy=correct / n if n else 0.0,
        ci_low=low,
        ci_high=high,
        verdicts=dict(Counter(g.verdict for g in graded)),
        **fields,
    )


def default_results_path(model: str, benchmark_name: str) -> Path:
    """`<model dir>/eval/<benchmark>.jsonl` for a local model, else
    `eval/<org>--<name>/<benchmark>.jsonl` in the working directory (a Hub model)."""
    local = Path(model)
    if local.is_dir():
        return local / "eval" / f"{benchmark_name}.jsonl"
    return (
        Path("eval")
        / re.sub(r"[^A-Za-z0-9._-]+", "-", model.replace("/", "--"))
        / (f"{benchmark_name}.jsonl")
    )


def summary_path(results: Path) -> Path:
    return results.with_name(results.name.removesuffix(".jsonl") + ".summary.json")


def run_eval(
    model: str,
    benchmark: str,
    settings: EvalSettings,
    *,
    out: Path | None = None,
    max_items: int | None = None,
    seed: int = 0,
    progress: Progress | None = None,
) -> EvalSummary:
    """Answer, grade and score `benchmark` with `model`; write per-item results and summary.

    Failure modes: InputFileError (benchmark unreadable / empty), OutputDirError (results
    path not writable), ModelError (model), ConfigError (backend).
    """
    import json

    bench = read_benchmark(benchmark, settings.split, max_items)
    results = out if out is not None else default_results_path(model, bench.name)
    check_writable(results.parent)
    started = time.perf_counter()
    backend, completions = generate(
        model, [item.question for item in bench.items], settings, seed=seed, progress=progress
    )
    graded = grade(bench.items, completions, settings.answer_timeout_s)
    write_jsonl(({**asdict(g), "correct": g.correct} for g in graded), results)
    summary = summarise(
        graded,
        model=model,
        benchmark=benchmark,
        skipped_rows=bench.skipped,
        backend=backend,
        seconds=round(time.perf_counter() - started, 2),
        results=str(results),
    )
    summary_path(results).write_text(json.dumps(summary.to_dict(), indent=2))
    return summary
