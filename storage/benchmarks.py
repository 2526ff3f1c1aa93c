"""Benchmark test sets to decontaminate against, read from any source `storage.sources`
reads (JSONL, Parquet, a `save_to_disk` directory, a Hub id; the `test` split preferred).

An item's text is its GSM8K-style `question` or MATH-style `problem`. Its id is the row's
`id` or `unique_id` column (MATH-500 has `unique_id`), else its 0-based row index, which is
what `datasets` calls the row (`ds[17]`) and what lm-evaluation-harness reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mathsynth.errors import InputFileError
from mathsynth.storage.sources import source_rows

TEXT_COLUMNS = ("question", "problem")
ID_COLUMNS = ("id", "unique_id")


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: its name (the Hub id, or the file / directory name), where it was read
    from, its (item id, text) items and how many rows had no usable text."""

    name: str
    source: str
    items: tuple[tuple[str, str], ...]
    skipped: int = 0


def benchmark_name(source: str) -> str:
    """ "openai/gsm8k:main" -> "openai/gsm8k:main"; "/data/math500.jsonl" -> "math500"."""
    path = Path(source)
    if path.exists():
        return path.stem if path.is_file() else path.name
    return source


def read_benchmark(source: str) -> Benchmark:
    """Read one benchmark.

    Failure modes: InputFileError for a source that cannot be read (see
    `storage.sources.source_rows`), one with a malformed JSONL line (a test set is read whole
    or not at all: a skipped item would be contamination nobody checks), or one in which no
    row has a `question` or `problem` text.
    """
    items: list[tuple[str, str]] = []
    skipped = 0
    for line, row in source_rows(source, split="test"):
        if isinstance(row, InputFileError):
            raise row
        text = next(
            (row[c] for c in TEXT_COLUMNS if isinstance(row.get(c), str) and row[c].strip()),
            None,
        )
        if text is None:
            skipped += 1
            continue
        ident = next((row[c] for c in ID_COLUMNS if isinstance(row.get(c), str | int)), None)
        items.append((str(ident) if ident is not None else str(line - 1), text))
    if not items:
        raise InputFileError(
            source, f"no benchmark item: no row has a {' or '.join(TEXT_COLUMNS)} text"
        )
    return Benchmark(benchmark_name(source), source, tuple(items), skipped)
