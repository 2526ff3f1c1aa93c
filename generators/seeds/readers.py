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
from collections.abc import Iterable, Iterator
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
from mathsynth.storage.jsonl import iter_jsonl

STAGE = "read_seeds"

# A seed row as read: (row number, the row or the error that made it unreadable).
_Row = tuple[int, dict[str, Any] | InputFileError]

_HUB_ID_RE = re.compile(r"^[\w.-]+(?:/[\w.-]+)?(?::[\w.-]+)?$")


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
    rows = _rows(source, split)
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


def _rows(source: str | Path, split: str | None = None) -> Iterator[_Row]:
    path = Path(source)
    if path.is_dir():
        return _directory_rows(path, split)
    if path.exists():
        return _file_rows(path)
    text = str(source)
    if path.suffix.lower() in {".jsonl", ".json", ".parquet"} or not _HUB_ID_RE.match(text):
        raise InputFileError(path, "no such file")
    return _hub_rows(text, split)


def _file_rows(path: Path) -> Iterator[_Row]:
    if path.suffix.lower() == ".parquet":
        return _parquet_rows(path)
    return _jsonl_rows(path)


def _jsonl_rows(path: Path) -> Iterator[_Row]:
    """Rows of a JSONL file; bad lines are held back until one good line proves it is JSONL.

    Failure modes: InputFileError when the file holds no valid JSON object line at all
    (a CSV, a binary file, an empty file).
    """
    held: list[_Row] = []
    valid = False
    for line, obj in iter_jsonl(path, strict=False):
        if valid:
            yield line, obj
        elif isinstance(obj, InputFileError):
            held.append((line, obj))
        else:
            valid = True
            yield from held
            yield line, obj
    if not valid:
        if held:
            line, first = held[0]
            raise InputFileError(path, f"not a JSONL file ({_why(first)})", line)
        raise InputFileError(path, "empty file, no seed rows")


def _parquet_rows(path: Path) -> Iterator[_Row]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InputFileError(path, f"not a readable Parquet file ({exc})") from None
    return _numbered(row for batch in parquet.iter_batches() for row in batch.to_pylist())


def _directory_rows(path: Path, split: str | None = None) -> Iterator[_Row]:
    if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as exc:  # datasets raises FileNotFoundError, ValueError, ...
            raise InputFileError(path, f"cannot load dataset ({exc})") from None
        return _numbered(_split_rows(loaded, path, split))
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".parquet", ".jsonl"})
    if not files:
        raise InputFileError(path, "directory holds no dataset, .parquet or .jsonl files")
    return _chained(files)


def _chained(files: list[Path]) -> Iterator[_Row]:
    # Row numbers restart per file; the label in a Rejection names the directory.
    for file in files:
        yield from _file_rows(file)


def _hub_rows(dataset_id: str, split: str | None = None) -> Iterator[_Row]:
    import datasets

    name, _, config = dataset_id.partition(":")
    try:
        loaded = datasets.load_dataset(name, config or None, split=split or "train")
    except Exception as exc:  # network, auth and unknown-dataset errors all end here
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFileError(dataset_id, f"cannot load dataset ({message})") from None
    return _numbered(_split_rows(loaded, Path(dataset_id), split))


def _split_rows(loaded: Any, label: Path, split: str | None = None) -> Iterable[dict[str, Any]]:
    """The rows of a Dataset, or of one split of a DatasetDict: `split` (which must exist),
    else "train", else the first."""
    if isinstance(loaded, dict):  # DatasetDict and IterableDatasetDict are dicts of splits
        splits = list(loaded.keys())
        if not splits:
            raise InputFileError(label, "dataset has no splits")
        if split is not None and split not in splits:
            raise InputFileError(label, f"dataset has no split {split!r} ({', '.join(splits)})")
        loaded = loaded[split or ("train" if "train" in splits else splits[0])]
    return iter(loaded)


def _numbered(rows: Iterable[dict[str, Any]]) -> Iterator[_Row]:
    return ((i, row) for i, row in enumerate(rows, start=1))


def _reject(label: str, line: int, reason: str, message: str, record: dict[str, Any]) -> Rejection:
    return Rejection(STAGE, reason, f"{label}:{line}: {message}", record)


def _text(row: dict[str, Any], key: str) -> str | None:
    value = row.get(key)
    return value if isinstance(value, str) and value.strip() else None


def _why(error: InputFileError | dict[str, Any]) -> str:
    """The message of a line-level InputFileError without its "path:line: " prefix."""
    text = str(error)
    if isinstance(error, InputFileError):
        text = text.removeprefix(f"{error.path}:{error.line}: ")
    return text


def _parse_row(
    label: str, line: int, row: dict[str, Any] | InputFileError, check_annotations: bool = True
) -> Seed | Rejection:
    if isinstance(row, InputFileError):
        return _reject(label, line, "malformed_row", _why(row), {"line": line})
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
