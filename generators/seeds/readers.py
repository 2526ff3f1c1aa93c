"""Seed readers: GSM8K- and MATH-style rows from JSONL, Parquet, a saved dataset directory or a
Hugging Face dataset id, turned into `Seed`s.

Row shapes:
  * GSM8K: `question`, `answer` (solution with `<<expr=value>>` annotations, final `#### N`)
  * MATH:  `problem`, `solution` (final answer in the last `\\boxed{...}`), optional
    `level` / `type` kept in `Seed.meta`
An `id` column becomes the seed id; rows without one get a stable id from their content.

Bad rows never stop a read: a row with missing fields, a broken annotation, no `####` or no
`\\boxed{}`, or a line that is not UTF-8 / JSON becomes a `Rejection` naming file and line,
and the rest of the source is read. Only a source that cannot be read at all (missing file,
not JSONL at all, unreadable Parquet, unknown dataset) raises InputFileError.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mathsynth.errors import InputFileError
from mathsynth.generators.common.annotations import (
    FINAL_ANSWER_RE,
    AnnotationError,
    find_annotations,
)
from mathsynth.records import Rejection, content_id
from mathsynth.seeds import Seed
from mathsynth.storage.sources import row_message, source_rows

STAGE = "read_seeds"


def read_seeds(
    source: str | Path,
    max_seeds: int | None = None,
    split: str | None = None,
    *,
    check_annotations: bool = True,
) -> Iterator[Seed | Rejection]:
    """Seeds from `source`, with a Rejection for every malformed row, in source order.

    `source` is a .jsonl/.json file, a .parquet file, a directory (a `save_to_disk` dataset,
    or Parquet / JSONL files), or a Hugging Face dataset id `name[:config]`. Of a dataset
    with splits, `split` is read (default: train, else the first split); benchmarks pass
    "test". At most `max_seeds` Seeds are yielded (Rejections do not count). A GSM8K row
    with a broken `<<...>>` annotation is rejected unless `check_annotations` is False (a
    benchmark needs only the question and the `####` answer).

    Failure modes: InputFileError for a missing path that is not a dataset id, a file that is
    not JSONL at all, an unreadable Parquet file, a dataset that cannot be loaded or that
    lacks the requested split.
    """
    label = str(source)
    rows = source_rows(source, split or "train", exact_split=split is not None)
    parsed = (_parse_row(label, line, row, check_annotations) for line, row in rows)
    if max_seeds is None:
        yield from parsed
        return
    count = 0
    for item in parsed:
        if count >= max_seeds:
            return
        if isinstance(item, Seed):
            count += 1
        yield item


def _reject(label: str, line: int, reason: str, message: str, record: dict[str, Any]) -> Rejection:
    return Rejection(STAGE, reason, f"{label}:{line}: {message}", record)


def _text(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    return value if isinstance(value, str) and value.strip() else None


def _parse_row(
    label: str, line: int, row: dict[str, Any] | InputFileError, check_annotations: bool = True
) -> Seed | Rejection:
    if isinstance(row, InputFileError):
        return _reject(label, line, "malformed_row", row_message(row), {"line": line})
    record = {k: v for k, v in row.items() if isinstance(v, (str, int, float, bool, type(None)))}
    if "question" in row:
        return _gsm8k_seed(label, line, row, record, check_annotations)
    if "problem" in row:
        return _math_seed(label, line, row, record)
    return _reject(
        label,
        line,
        "missing_field",
        "row has neither 'question'/'answer' (GSM8K) nor 'problem'/'solution' (MATH)",
        record,
    )


def _seed_id(row: dict[str, Any], *content: str) -> str:
    ident = row.get("id")
    if isinstance(ident, (str, int)) and not isinstance(ident, bool) and str(ident).strip():
        return str(ident).strip()
    return content_id(*content)


def _gsm8k_seed(
    label: str, line: int, row: dict[str, Any], record: dict[str, Any], check_annotations: bool
) -> Seed | Rejection:
    question, solution = _text(row, "question"), _text(row, "answer")
    if question is None or solution is None:
        missing = "question" if question is None else "answer"
        return _reject(
            label, line, "missing_field", f"field {missing!r} is missing or empty", record
        )
    final = FINAL_ANSWER_RE.search(solution)
    if final is None or not final["answer"]:
        return _reject(label, line, "missing_final_answer", "answer has no '#### N' line", record)
    try:
        if check_annotations:
            find_annotations(solution)
    except AnnotationError as exc:
        return _reject(label, line, "bad_annotation", str(exc), record)
    return Seed(
        id=_seed_id(row, question, solution),
        question=question,
        answer=final["answer"].replace(",", ""),
        solution=solution,
        source=label,
        line=line,
        meta={"format": "gsm8k"},
    )


def _math_seed(
    label: str, line: int, row: dict[str, Any], record: dict[str, Any]
) -> Seed | Rejection:
    problem, solution = _text(row, "problem"), _text(row, "solution")
    if problem is None or solution is None:
        missing = "problem" if problem is None else "solution"
        return _reject(
            label, line, "missing_field", f"field {missing!r} is missing or empty", record
        )
    answer = last_boxed(solution)
    if not answer:
        return _reject(label, line, "missing_boxed_answer", "solution has no \\boxed{...}", record)
    meta: dict[str, Any] = {"format": "math"}
    meta.update({k: row[k] for k in ("level", "type") if isinstance(row.get(k), (str, int))})
    return Seed(
        id=_seed_id(row, problem, solution),
        question=problem,
        answer=answer,
        solution=solution,
        source=label,
        line=line,
        meta=meta,
    )


_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` (nested braces allowed), or None if there is none
    or its braces never close."""
    starts = list(_BOXED_RE.finditer(text))
    if not starts:
        return None
    pos = starts[-1].end()
    depth = 1
    for i in range(pos, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[pos:i].strip()
    return None
