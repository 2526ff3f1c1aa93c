"""A benchmark as (id, question, gold answer) items, read by the seed readers.

GSM8K-style rows (`question`, `answer` ending in `#### N`) and MATH-style rows (`problem`,
`solution` with a final `\\boxed{...}`), from JSONL, Parquet, a `save_to_disk` directory or a
Hugging Face dataset id `name[:config]` (whose `split` is read, "test" by default).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mathsynth.errors import InputFileError
from mathsynth.generators.seeds.readers import read_seeds
from mathsynth.seeds import Seed


@dataclass(frozen=True)
class BenchmarkItem:
    id: str
    question: str
    answer: str


@dataclass
class Benchmark:
    name: str
    items: list[BenchmarkItem]
    skipped: int  # rows that are not a usable item (no `####` / `\\boxed{}`, missing field)
    first_skipped: str | None  # why the first of them was skipped, "file:line: reason"


def read_benchmark(source: str, split: str = "test", max_items: int | None = None) -> Benchmark:
    """The items of `source`, in source order (at most `max_items`).

    Failure modes: InputFileError for a source that cannot be read (see `read_seeds`), a
    dataset without `split`, or one in which no row is a usable item.
    """
    items: list[BenchmarkItem] = []
    skipped, first = 0, None
    is_dir_or_id = Path(source).is_dir() or not Path(source).exists()
    rows = read_seeds(
        source, max_items, split=split if is_dir_or_id else None, check_annotations=False
    )
    for row in rows:
        if isinstance(row, Seed):
            items.append(BenchmarkItem(row.id, row.question, row.answer))
        else:
            skipped += 1
            first = first or row.detail
    if not items:
        why = f" (first: {first})" if first else ""
        raise InputFileError(source, f"no benchmark item in it{why}")
    return Benchmark(slug(source, split if is_dir_or_id else None), items, skipped, first)


def slug(source: str, split: str | None) -> str:
    """A file-name-safe name for the benchmark: the file's stem, or the dataset id + split."""
    path = Path(source)
    if path.exists():
        base = path.stem if path.is_file() else path.resolve().name
    else:  # a Hub id, "org/name[:config]"
        base = source.replace("/", "--")
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", base if split is None else f"{base}-{split}")
    return name.strip("-") or "benchmark"
