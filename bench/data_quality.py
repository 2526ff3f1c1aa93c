"""Data quality of a build, per method, beside GSM8K train: what a trainer reading rows sees.

    .venv/bin/python -m bench.data_quality [BUILD_DIR] [--gsm8k PATH] [--sample 2000]

BUILD_DIR defaults to a fresh default build (`mathsynth build`, made in a temporary folder
when no directory is given). For every method (and all rows together) and for GSM8K train
(`../shared/data/gsm8k/train.jsonl`, read in place, never copied) it prints:

- rows, distinct seeds, and distinct questions once numbers are masked;
- near-duplicate share: the share of a random sample (2,000 rows, or all when fewer) that has
  another sampled row whose numbers-masked word-5-gram Jaccard similarity is above 0.7 / 0.9,
  on the question and on question + solution (exact Jaccard, candidates from shared 5-grams);
- "1 <plural noun>" phrases ("1 hours") in questions and solutions;
- composition links by (kind, unit) -> (kind, unit), with every mismatch (other kind, other
  unit without a conversion, a value outside the slot's range);
- the most repeated sentence (numbers masked) and the share of rows containing it, the
  closing "The answer is N." / "#### N" line excepted;
- answer formats (the answer type each row declares in provenance: int, decimal, money,
  fraction, exact; GSM8K's read from the `#### N` line) and rows whose `answer` is not written
  as its type says or whose closing line does not show it exactly.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

from mathsynth.generators.common.instantiate import answer_line
from mathsynth.inflection import one_plural
from mathsynth.numbers import answer_fits_type, answer_type_of
from mathsynth.storage.jsonl import iter_jsonl

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
METHODS = ("instantiate", "change_numbers", "percent_restatement", "compose", "concept_walk")

_NUMBER = re.compile(r"\$?-?\d[\d,]*(?:\.\d+)?(?:/\d+)?%?")
_WORD = re.compile(r"[a-z]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_ANSWER_LINE = re.compile(r"^(?:The answer is .*|#### .*)$")
_ANNOTATION = re.compile(r"<<[^>]*>>")


def mask(text: str) -> str:
    """Numbers (with $, %, commas, fractions) replaced by N."""
    return _NUMBER.sub("N", text)


def shingles(text: str, n: int = 5) -> frozenset[str]:
    """Word 5-grams of a text with numbers masked (a masked number is the word "n")."""
    words = _WORD.findall(mask(text).lower())
    if len(words) < n:
        return frozenset([" ".join(words)])
    return frozenset(" ".join(words[i : i + n]) for i in range(len(words) - n + 1))


def neighbour_shares(texts: Sequence[str], thresholds: Sequence[float]) -> list[float]:
    """For each threshold, the share of texts with another text above it (exact Jaccard)."""
    sets = [shingles(t) for t in texts]
    index: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(sets):
        for g in s:
            index[g].append(i)
    best = [0.0] * len(sets)
    for i, s in enumerate(sets):
        candidates: set[int] = set()
        for g in s:
            candidates.update(index[g])
        candidates.discard(i)
        for j in candidates:
            if j < i:
                continue
            inter = len(s & sets[j])
            jac = inter / (len(s) + len(sets[j]) - inter)
            if jac > best[i]:
                best[i] = jac
            if jac > best[j]:
                best[j] = jac
    n = max(1, len(sets))
    return [sum(b > t for b in best) / n for t in thresholds]


@dataclass
class Row:
    question: str
    solution: str
    answer: str
    seed: str
    answer_type: str
    last_line_ok: bool
    link: dict[str, Any] | None = None


@dataclass
class Report:
    name: str
    rows: int = 0
    seeds: int = 0
    masked_questions: int = 0
    near_q: list[float] = field(default_factory=lambda: [0.0, 0.0])
    near_qs: list[float] = field(default_factory=lambda: [0.0, 0.0])
    one_plural: int = 0
    one_plural_examples: list[str] = field(default_factory=list)
    links: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    top_sentence: str = ""
    top_share: float = 0.0
    formats: Counter[str] = field(default_factory=Counter)
    bad_last_line: int = 0


def sentences(text: str) -> Iterable[str]:
    for part in _SENTENCE.split(text):
        part = part.strip()
        if part and not _ANSWER_LINE.match(part):
            yield mask(part)


def measure(name: str, rows: list[Row], sample: int, rng: random.Random) -> Report:
    report = Report(name, rows=len(rows))
    report.seeds = len({r.seed for r in rows})
    report.masked_questions = len({mask(r.question) for r in rows})
    picked = rows if len(rows) <= sample else rng.sample(rows, sample)
    report.near_q = neighbour_shares([r.question for r in picked], (0.7, 0.9))
    report.near_qs = neighbour_shares([f"{r.question}\n{r.solution}" for r in picked], (0.7, 0.9))
    sentence_rows: Counter[str] = Counter()
    for r in rows:
        found = one_plural(r.question) + one_plural(r.solution)
        report.one_plural += len(found)
        if found and len(report.one_plural_examples) < 3:
            report.one_plural_examples.append(found[0])
        sentence_rows.update(set(sentences(f"{r.question}\n{r.solution}")))
        report.formats[r.answer_type] += 1
        report.bad_last_line += not r.last_line_ok
        if r.link:
            link = r.link
            pair = f"{link['from_kind']}/{link['from_unit']} -> {link['to_kind']}/{link['to_unit']}"
            report.links[pair] += 1
            mismatch = (
                link["from_kind"] != link["to_kind"]
                or (link["from_unit"] != link["to_unit"] and link.get("factor") == "1")
                or not link.get("in_range", False)
            )
            if mismatch:
                report.mismatches.append(pair)
    if sentence_rows:
        report.top_sentence, count = sentence_rows.most_common(1)[0]
        report.top_share = count / len(rows)
    return report


def read_build(out: Path) -> dict[str, list[Row]]:
    table = ds.dataset(out / "sft", format="parquet").to_table(
        columns=["method", "seed_id", "question", "solution", "answer", "provenance"]
    )
    by_method: dict[str, list[Row]] = defaultdict(list)
    for rec in table.to_pylist():
        prov = json.loads(rec["provenance"] or "{}")
        kind = prov.get("answer_type") or answer_type_of(rec["answer"])
        last = rec["solution"].rstrip().splitlines()[-1] if rec["solution"] else ""
        row = Row(
            rec["question"],
            rec["solution"],
            rec["answer"],
            rec["seed_id"],
            kind,
            last == answer_line(rec["answer"], kind) and answer_fits_type(rec["answer"], kind),
            prov.get("link"),
        )
        by_method[rec["method"]].append(row)
    return by_method


def read_gsm8k(path: Path) -> list[Row]:
    rows = []
    for i, rec in iter_jsonl(path):
        body, _, final = rec["answer"].rpartition("####")
        final = final.strip().replace(",", "")
        solution = _ANNOTATION.sub("", body).strip()
        rows.append(
            Row(rec["question"], solution, final, f"gsm8k-{i}", answer_type_of(final), True)
        )
    return rows


def build_default(out: Path) -> None:
    cmd = [str(Path(sys.executable).with_name("mathsynth")), "build", "--out", str(out)]
    print(f"building the default dataset: {' '.join(cmd)}", file=sys.stderr)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def print_table(reports: list[Report]) -> None:
    def pct(x: float) -> str:
        return f"{100 * x:.1f}%"

    lines = [
        ("rows", [str(r.rows) for r in reports]),
        ("distinct seeds", [str(r.seeds) for r in reports]),
        ("distinct questions, numbers masked", [str(r.masked_questions) for r in reports]),
        ("near-dup > 0.7, question", [pct(r.near_q[0]) for r in reports]),
        ("near-dup > 0.9, question", [pct(r.near_q[1]) for r in reports]),
        ("near-dup > 0.7, question + solution", [pct(r.near_qs[0]) for r in reports]),
        ("near-dup > 0.9, question + solution", [pct(r.near_qs[1]) for r in reports]),
        ('"1 <plural>" phrases', [str(r.one_plural) for r in reports]),
        ("composition links", [str(sum(r.links.values())) for r in reports]),
        ("link mismatches", [str(len(r.mismatches)) for r in reports]),
        ("most repeated sentence share", [pct(r.top_share) for r in reports]),
        *[
            (f"answers: {t}", [str(r.formats.get(t, 0)) for r in reports])
            for t in ("int", "decimal", "money", "fraction", "exact")
        ],
        (
            "non-decimal exact answers",
            [pct((r.formats["fraction"] + r.formats["exact"]) / max(1, r.rows)) for r in reports],
        ),
        ("closing line differs from answer", [str(r.bad_last_line) for r in reports]),
    ]
    width = max(len(label) for label, _ in lines)
    cols = [max(len(r.name), *(len(v[i]) for _, v in lines)) for i, r in enumerate(reports)]
    print(
        " " * width + "  " + "  ".join(r.name.rjust(c) for r, c in zip(reports, cols, strict=True))
    )
    for label, values in lines:
        cells = "  ".join(v.rjust(c) for v, c in zip(values, cols, strict=True))
        print(f"{label.ljust(width)}  {cells}")
    print()
    for r in reports:
        print(f"[{r.name}] most repeated sentence: {r.top_sentence[:110]!r}")
        if r.one_plural_examples:
            print(f"[{r.name}] '1 <plural>' examples: {r.one_plural_examples}")
        for pair, n in r.links.most_common():
            print(f"[{r.name}] link {pair}: {n}")
        for pair, n in Counter(r.mismatches).most_common():
            print(f"[{r.name}] MISMATCH {pair}: {n}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build", nargs="?", type=Path, help="a build's output directory")
    parser.add_argument("--gsm8k", type=Path, default=DEFAULT_GSM8K)
    parser.add_argument("--sample", type=int, default=2000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        out = args.build or Path(tmp) / "default"
        if not (out / "sft").is_dir():
            build_default(out)
        by_method = read_build(out)
        rng = random.Random(0)
        methods = [m for m in METHODS if m in by_method] + sorted(set(by_method) - set(METHODS))
        reports = [measure(m, by_method[m], args.sample, rng) for m in methods]
        everything = [r for m in methods for r in by_method[m]]
        reports.append(measure("all", everything, args.sample, rng))
        if args.gsm8k.is_file():
            reports.append(measure("gsm8k train", read_gsm8k(args.gsm8k), args.sample, rng))
        else:
            print(f"(GSM8K train not found at {args.gsm8k}: no reference column)")
        print(f"build: {out}")
        print_table(reports)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
