"""RISE pair quality: yield, wrong final answers, plausibility drops, formatting tells, spans.

Two sources, each judged by the same checks:

- **default build**: the embedded default (bundled seeds), built here in-process with the
  executor (no Prefect) into a temporary directory, or read from `--build DIR`. Its `dpo`
  rows are judged as written; drop reasons come from the catalog's per-batch stage stats.
- **GSM8K**: up to `-n` verified problems from GSM8K train (every `<<expr=value>>` annotation
  must recompute exactly; annotations become plain step text and `#### N` becomes "The answer
  is N."), run through the rule-based RISE stage here. Skipped when the file is missing.

Printed per source:

- valid pairs / verified problems, rejections by reason, error types and consequences;
- share of rejected solutions whose final answer equals the chosen one (goal 0), read by an
  independent regex, not the stage's parser;
- candidate edits dropped by the plausibility / formatting rules, by reason, and an
  independent audit of the numbers that changed (whole -> fractional, sign, factor > 5);
- accuracy of a formatting-only classifier telling chosen from rejected texts (goal <= 52%):
  logistic regression (numpy, which `datasets` already installs; no sklearn) over 17 number
  formatting features (decimals, trailing zeros, money / percent / thousands signs, fractions,
  leading zeros, the look of the final number, "40.0."-style endings), 5-fold cross-validated
  with both texts of a pair in the same fold; plus the best single-feature threshold;
- share of differing characters covered by spans (goal 100%), alignment-free: a pair passes
  when the text outside its spans is the chosen text's, in order (then some alignment puts
  every differing character inside a span); beside it, the share of the characters a plain
  whole-text difflib marks as changed that lie in spans;
- throughput of the stage (GSM8K).

    .venv/bin/python -m bench.rise_yield [--build DIR] [--gsm8k PATH] [-n 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import shutil
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from mathsynth.generators.common.annotations import remove_calculator_annotations
from mathsynth.generators.common.arithmetic import ExpressionError
from mathsynth.generators.rise.offline import RiseErrorInjection
from mathsynth.generators.rise.plausible import MAX_FACTOR
from mathsynth.generators.rise.steps import evaluate_text
from mathsynth.numbers import parse_number
from mathsynth.records import PreferencePair, Problem, Rejection, Verification
from mathsynth.storage.jsonl import iter_jsonl

DEFAULT_GSM8K = Path("/work/shared/data/gsm8k/train.jsonl")
_ANNOTATION_MARK = "<<"
# Independent of generators.rise.steps: numbers as a reader sees them.
_NUMBER = re.compile(
    r"(?<![\w.])-?\$?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)(?:/\d+(?!\d|\.\d))?%?"
)
_FINAL = re.compile(r"(?:answer is|####)\s*:?\s*(-?\$?[\d,]*\.?\d+(?:/\d+)?)")


# -- inputs ------------------------------------------------------------------------------------


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


def default_build(out: Path) -> None:
    """The embedded default build, in-process and without Prefect (as bench.build_scaling)."""
    from mathsynth.config import load_config
    from mathsynth.executor.local import build_session, finish_build, prepare_build, run_batch

    config = load_config(out=out)
    start = time.perf_counter()
    with build_session(config, "bench-rise") as ctx:
        batches, done = prepare_build(ctx, overwrite=False)
        with ThreadPoolExecutor(max_workers=config.max_workers) as pool:
            summaries = list(pool.map(lambda b: run_batch(ctx, b, done), batches))
        finish_build(ctx, summaries, time.perf_counter() - start)


def read_build(out: Path) -> tuple[list[dict[str, Any]], dict[str, str], Counter[str], int]:
    """(dpo rows, answer by sft id, stage stats summed over batches, verified sft rows)."""
    import duckdb

    con = duckdb.connect(str(out / "catalog.duckdb"), read_only=True)
    try:
        stats: Counter[str] = Counter()
        for (blob,) in con.execute("SELECT stats FROM batches").fetchall():
            stats.update(json.loads(blob or "{}"))
    finally:
        con.close()
    dpo = duckdb.sql(
        f"SELECT source_id, chosen_text, rejected_text, spans, error_type, provenance, "
        f"edit_start, edit_end, step_index FROM '{out}/dpo/*.parquet'"
    ).fetchall()
    keys = (
        "source_id",
        "chosen_text",
        "rejected_text",
        "spans",
        "error_type",
        "provenance",
        "edit_start",
        "edit_end",
        "step_index",
    )
    rows = [dict(zip(keys, r, strict=True)) for r in dpo]
    for row in rows:
        row["provenance"] = json.loads(row["provenance"])
    answers = dict(
        duckdb.sql(
            f"SELECT id, answer FROM '{out}/sft/*.parquet' WHERE verification.status = 'verified'"
        ).fetchall()
    )
    return rows, answers, stats, len(answers)


# -- checks ------------------------------------------------------------------------------------


def final_answer(text: str) -> Fraction | None:
    lines = [line for line in text.split("\n") if line.strip()]
    match = _FINAL.search(lines[-1]) if lines else None
    if match is None:
        return None
    try:
        return parse_number(match.group(1))
    except ValueError:
        return None


def _decimals(number: str) -> int:
    body = number.rstrip("%").split("/")[0]
    return len(body.split(".", 1)[1]) if "." in body else 0


def format_features(text: str) -> list[float]:
    """17 features of how a text writes its numbers, none of what the numbers are."""
    numbers = _NUMBER.findall(text) or ["0"]
    n = len(numbers)
    places = [_decimals(x) for x in numbers]
    padded = [
        p > 0 and x.rstrip("%").split("/")[0].endswith("0")
        for x, p in zip(numbers, places, strict=True)
    ]
    digits = [x.lstrip("-$").rstrip("%") for x in numbers]
    last = numbers[-1]
    last_places = _decimals(last)
    return [
        sum(p > 0 for p in places) / n,
        sum(padded) / n,
        statistics.fmean(places),
        max(places),
        sum(x.lstrip("-").startswith("$") for x in numbers) / n,
        sum("," in x for x in numbers) / n,
        sum(x.endswith("%") for x in numbers) / n,
        sum("/" in x for x in numbers) / n,
        float(last_places > 0),
        float(padded[-1]),
        float(last_places),
        sum(len(d.split(".")[0].replace(",", "")) >= 4 and "," not in d for d in digits) / n,
        float(bool(re.search(r"\d\.\d*0\.?\s*$", text))),
        sum(x.endswith(".0") for x in numbers) / n,
        sum(p == 2 for p in places) / n,
        sum(p == 0 and "/" not in x for x, p in zip(numbers, places, strict=True)) / n,
        sum(x.lstrip("-$").startswith(".") for x in numbers) / n,
    ]


def _folds(pairs: int, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(pairs)
    return [order[i::k] for i in range(k)]


def _logistic(x: np.ndarray, y: np.ndarray, steps: int = 400, l2: float = 1e-3) -> np.ndarray:
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(x @ w)))
        w -= 0.5 * (x.T @ (p - y) / len(y) + l2 * w)
    return w


def classifier_accuracy(pairs: list[tuple[str, str]]) -> tuple[float, float]:
    """(logistic regression, best single-feature threshold) accuracy telling the rejected
    text from the chosen one, 5-fold cross-validated; 50% is chance (the classes are equal)."""
    feats = np.array([[format_features(c), format_features(r)] for c, r in pairs])  # (n,2,f)
    logistic_hits = stump_hits = total = 0
    for test in _folds(len(pairs)):
        train = np.setdiff1d(np.arange(len(pairs)), test)
        x_train = feats[train].reshape(-1, feats.shape[2])
        y_train = np.tile([0.0, 1.0], len(train))
        x_test = feats[test].reshape(-1, feats.shape[2])
        y_test = np.tile([0.0, 1.0], len(test))
        mean, std = x_train.mean(0), x_train.std(0) + 1e-9
        bias = np.ones((len(x_train), 1))
        w = _logistic(np.hstack([(x_train - mean) / std, bias]), y_train)
        scores = np.hstack([(x_test - mean) / std, np.ones((len(x_test), 1))]) @ w
        logistic_hits += int(((scores > 0) == (y_test == 1)).sum())
        stump_hits += _stump_hits(x_train, y_train, x_test, y_test)
        total += len(y_test)
    return logistic_hits / total, stump_hits / total


def _stump_hits(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> int:
    best = (0.5, 0, 0.0, 1)
    for f in range(x_train.shape[1]):
        for threshold in np.unique(x_train[:, f])[:200]:
            for sign in (1, -1):
                predicted = sign * (x_train[:, f] - threshold) > 0
                accuracy = float((predicted == (y_train == 1)).mean())
                if accuracy > best[0]:
                    best = (accuracy, f, threshold, sign)
    _, f, threshold, sign = best
    return int(((sign * (x_test[:, f] - threshold) > 0) == (y_test == 1)).sum())


def span_coverage(chosen: str, rejected: str, spans: Iterable[dict[str, int]]) -> tuple[int, int]:
    """(changed characters of `rejected` per a character-level difflib, how many are covered)."""
    covered = set()
    for span in spans:
        covered.update(range(span["start"], span["end"]))
    changed = covered_changed = 0
    matcher = difflib.SequenceMatcher(None, chosen, rejected, autojunk=False)
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        changed += j2 - j1
        covered_changed += sum(j in covered for j in range(j1, j2))
    return changed, covered_changed


def outside_is_shared(chosen: str, rejected: str, spans: list[dict[str, int]]) -> bool:
    """Every piece of `rejected` outside the spans is a piece of `chosen`, in order."""
    at = pos = 0
    for start, end in [(s["start"], s["end"]) for s in spans] + [(len(rejected), len(rejected))]:
        piece = rejected[pos:start]
        found = chosen.find(piece, at)
        if found < 0:
            return False
        at, pos = found + len(piece), end
    return True


def audit_changes(pair: dict[str, Any]) -> Counter[str]:
    """Numbers that changed, line by line and position by position, in lines with the same
    count of numbers. The edited line of a swap_terms pair is left out (its numbers trade
    places rather than change); its changed result is judged where later lines carry it."""
    found: Counter[str] = Counter()
    lines = zip(pair["chosen_text"].split("\n"), pair["rejected_text"].split("\n"), strict=False)
    for index, (before, after) in enumerate(lines):
        if before == after or (pair["error_type"] == "swap_terms" and index == pair["step_index"]):
            continue
        old, new = _NUMBER.findall(before), _NUMBER.findall(after)
        if len(old) == len(new):
            for a, b in zip(old, new, strict=True):
                if a != b:
                    found.update(_audit_number(a, b))
    return found


def _audit_number(a: str, b: str) -> Counter[str]:
    """What is implausible about `a` becoming `b` (a count is written without decimals)."""
    found: Counter[str] = Counter()
    x, y = parse_number(a.rstrip("%")), parse_number(b.rstrip("%"))  # as shown: 20% is 20
    if "." not in a and "/" not in a and y.denominator != 1:
        found["whole_became_fractional"] += 1
    if x >= 0 > y:
        found["became_negative"] += 1
    if x and y and not Fraction(1, MAX_FACTOR) <= abs(y / x) <= MAX_FACTOR:
        found[f"factor_over_{MAX_FACTOR}"] += 1
    if _decimals(a) != _decimals(b):
        found["decimals_changed"] += 1
    return found


def report(
    label: str,
    pairs: list[dict[str, Any]],
    answers: dict[str, str],
    problems: int,
    rejections: Counter[str],
    stats: Counter[str],
) -> None:
    print(f"\n== {label}")
    print(f"valid pairs: {len(pairs)}/{problems} = {len(pairs) / max(problems, 1):.1%}")
    print(f"rejections: {dict(rejections.most_common())}")
    same = sum(
        (a := final_answer(p["rejected_text"])) is None
        or a == final_answer(p["chosen_text"])
        or (p["source_id"] in answers and a == parse_number(answers[p["source_id"]]))
        for p in pairs
    )
    print(
        f"rejected final answer equals the chosen one (or is missing): {same} = "
        f"{same / max(len(pairs), 1):.2%} (goal 0)"
    )
    dropped = Counter({k.split("dropped:", 1)[1]: v for k, v in stats.items() if "dropped:" in k})
    print(f"candidate edits dropped, by reason: {dict(dropped.most_common())}")
    audit: Counter[str] = Counter()
    for p in pairs:
        audit.update(audit_changes(p))
    print(f"audit of changed numbers (independent): {dict(audit) or 'none implausible'}")
    logistic, stump = classifier_accuracy([(p["chosen_text"], p["rejected_text"]) for p in pairs])
    print(
        f"formatting-only classifier accuracy: logistic regression {logistic:.1%}, "
        f"best single feature {stump:.1%} (chance 50%, goal <= 52%)"
    )
    changed = covered = 0
    unshared = 0
    for p in pairs:
        c, k = span_coverage(p["chosen_text"], p["rejected_text"], p["spans"])
        changed += c
        covered += k
        unshared += not outside_is_shared(p["chosen_text"], p["rejected_text"], p["spans"])
    print(
        f"differing characters covered by spans: "
        f"{1 - unshared / max(len(pairs), 1):.2%} of pairs have every character outside their "
        f"spans shared with the chosen text, in order (goal 100%; {unshared} pairs do not)"
    )
    print(
        f"  vs a plain whole-text character difflib: {covered}/{changed} = "
        f"{covered / max(changed, 1):.2%} of the characters it marks lie in spans (an "
        "alignment choice: it may pair a step with another step that reads alike)"
    )
    spans = [(p["edit_end"] - p["edit_start"]) / len(p["rejected_text"]) for p in pairs]
    print(f"median edit span / rejected length: {statistics.median(spans):.1%}")
    for name, counts in (
        ("error types", Counter(p["error_type"] for p in pairs)),
        ("consequence", Counter(p["provenance"].get("consequence") for p in pairs)),
    ):
        shares = ", ".join(f"{k} {v / len(pairs):.1%}" for k, v in counts.most_common())
        print(f"{name}: {shares}")


def _as_row(pair: PreferencePair) -> dict[str, Any]:
    return {
        "source_id": pair.source_id,
        "chosen_text": pair.chosen_text,
        "rejected_text": pair.rejected_text,
        "spans": pair.spans,
        "error_type": pair.error_type,
        "provenance": pair.provenance,
        "edit_start": pair.edit_start,
        "edit_end": pair.edit_end,
        "step_index": pair.step_index,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, help="an existing build to judge")
    parser.add_argument("--gsm8k", type=Path, default=DEFAULT_GSM8K)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    tmp = None
    out = args.build
    if out is None:
        tmp = Path(tempfile.mkdtemp(prefix="mathsynth-rise-bench-"))
        out = tmp / "default"
        started = time.perf_counter()
        default_build(out)
        print(f"default build made in {time.perf_counter() - started:.0f} s ({out})")
    try:
        rows, answers, stats, verified = read_build(out)
        rejected = Counter(
            {
                k.split("rejected:", 1)[1]: v
                for k, v in stats.items()
                if k.startswith("rise.rejected:")
            }
        )
        report(f"default build ({out})", rows, answers, verified, rejected, stats)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    if not args.gsm8k.is_file():
        print(f"\n== GSM8K: skipped ({args.gsm8k} not found)")
        return
    problems = gsm8k_problems(args.gsm8k, args.n)
    stage = RiseErrorInjection(seed=args.seed)
    started = time.perf_counter()
    out_records = [r for r in stage.run(problems) if not isinstance(r, Problem)]
    elapsed = time.perf_counter() - started
    pairs = [_as_row(r) for r in out_records if isinstance(r, PreferencePair)]
    rejections = Counter(r.reason for r in out_records if isinstance(r, Rejection))
    gold = {p.id: p.answer for p in problems}
    report(
        f"GSM8K train, {len(problems)} verified ({args.gsm8k})",
        pairs,
        gold,
        len(problems),
        rejections,
        stage.stats,
    )
    print(f"throughput: {len(problems) / elapsed:,.0f} problems/s ({elapsed:.2f} s)")


if __name__ == "__main__":
    main()
