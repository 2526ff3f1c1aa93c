"""Reading and writing JSON Lines files with errors that name the file and line."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from mathsynth.errors import InputFileError


def iter_jsonl(path: str | Path, *, strict: bool = True) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed object) for each non-blank line.

    Failure modes: a missing or unreadable file raises InputFileError at once. With
    `strict=True` (the default) a line that is not valid UTF-8 or not valid JSON, or that is
    not a JSON object, raises InputFileError naming the line. With `strict=False` such a line
    is yielded as (line number, InputFileError) so the caller can record it and go on.
    """
    p = Path(path)
    if not p.exists():
        raise InputFileError(p, "no such file")
    if p.is_dir():
        raise InputFileError(p, "is a directory, expected a JSONL file")
    try:
        fh = p.open("rb")
    except OSError as exc:
        raise InputFileError(p, f"cannot open: {exc.strerror}") from None
    with fh:
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8")
                obj = json.loads(text)
                if not isinstance(obj, dict):
                    raise ValueError(f"expected a JSON object, got {type(obj).__name__}")
            except UnicodeDecodeError:
                err = InputFileError(p, "line is not valid UTF-8", lineno)
                if strict:
                    raise err from None
                yield lineno, err
                continue
            except ValueError as exc:
                msg = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
                err = InputFileError(p, f"not valid JSON ({msg})", lineno)
                if strict:
                    raise err from None
                yield lineno, err
                continue
            yield lineno, obj


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Whole file as a list (validates every line before returning anything)."""
    return [obj for _, obj in iter_jsonl(path)]


def write_jsonl_lines(rows: Iterable[dict[str, Any]], out: TextIO) -> int:
    """Write rows to an open text stream, one JSON object per line; returns the count."""
    n = 0
    for row in rows:
        out.write(json.dumps(row, ensure_ascii=False, default=str))
        out.write("\n")
        n += 1
    return n


def write_jsonl(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write rows atomically: a temp file in the same directory, then rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8") as fh:
            n = write_jsonl_lines(rows, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, p)
    finally:
        tmp.unlink(missing_ok=True)
    return n
