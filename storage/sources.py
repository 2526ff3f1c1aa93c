"""Rows of a user-named dataset source: a JSONL / Parquet file, a directory (a `save_to_disk`
dataset, or Parquet / JSONL files) or a Hugging Face dataset id `name[:config]`.

Seed sources (`generators.seeds.readers`) and decontamination benchmarks
(`storage.benchmarks`) are read through here, so both accept the same sources and report a
bad one the same way. A row comes with its number (1-based line of a JSONL file, row of a
Parquet file or dataset); a JSONL line that is not a JSON object comes as the InputFileError
that says why, so the caller decides whether one bad line spoils the source.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from mathsynth.errors import InputFileError
from mathsynth.storage.jsonl import iter_jsonl

# A row as read: (row number, the row or the error that made it unreadable).
Row = tuple[int, dict[str, Any] | InputFileError]

_HUB_ID_RE = re.compile(r"^[\w.-]+(?:/[\w.-]+)?(?::[\w.-]+)?$")


def source_rows(
    source: str | Path, split: str = "train", *, exact_split: bool = False
) -> Iterator[Row]:
    """The rows of `source`, in order. For a dataset with several splits (a saved
    DatasetDict, a Hub dataset) the rows of `split`, else of its first split; with
    `exact_split`, a dataset without `split` is an error (a split the user named).

    Failure modes: InputFileError for a missing path that is not a dataset id, a file that is
    not JSONL at all, an unreadable Parquet file or a dataset that cannot be loaded (a Hub id
    needs the network or the local Hugging Face cache).
    """
    path = Path(source)
    if path.is_dir():
        return _directory_rows(path, split, exact_split)
    if path.exists():
        return _file_rows(path)
    text = str(source)
    if path.suffix.lower() in {".jsonl", ".json", ".parquet"} or not _HUB_ID_RE.match(text):
        raise InputFileError(path, "no such file")
    return _hub_rows(text, split, exact_split)


def row_message(error: InputFileError | dict[str, Any]) -> str:
    """The message of a line-level InputFileError without its "path:line: " prefix."""
    text = str(error)
    if isinstance(error, InputFileError):
        text = text.removeprefix(f"{error.path}:{error.line}: ")
    return text


def _file_rows(path: Path) -> Iterator[Row]:
    if path.suffix.lower() == ".parquet":
        return _parquet_rows(path)
    return _jsonl_rows(path)


def _jsonl_rows(path: Path) -> Iterator[Row]:
    """Rows of a JSONL file; bad lines are held back until one good line proves it is JSONL.

    Failure modes: InputFileError when the file holds no valid JSON object line at all
    (a CSV, a binary file, an empty file).
    """
    held: list[Row] = []
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
            raise InputFileError(path, f"not a JSONL file ({row_message(first)})", line)
        raise InputFileError(path, "empty file, no rows")


def _parquet_rows(path: Path) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise InputFileError(path, f"not a readable Parquet file ({exc})") from None
    return _numbered(row for batch in parquet.iter_batches() for row in batch.to_pylist())


def _directory_rows(path: Path, split: str, exact_split: bool = False) -> Iterator[Row]:
    if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        import datasets

        try:
            loaded = datasets.load_from_disk(str(path))
        except Exception as exc:  # datasets raises FileNotFoundError, ValueError, ...
            raise InputFileError(path, f"cannot load dataset ({exc})") from None
        return _numbered(_split_rows(loaded, path, split, exact_split))
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in {".parquet", ".jsonl"})
    if not files:
        raise InputFileError(path, "directory holds no dataset, .parquet or .jsonl files")
    return _chained(files)


def _chained(files: list[Path]) -> Iterator[Row]:
    # Row numbers restart per file; the label in a Rejection names the directory.
    for file in files:
        yield from _file_rows(file)


def _hub_rows(dataset_id: str, split: str, exact_split: bool = False) -> Iterator[Row]:
    import datasets

    name, _, config = dataset_id.partition(":")
    try:
        try:
            loaded = datasets.load_dataset(name, config or None, split=split)
        except ValueError as exc:
            if exact_split or "split" not in str(exc).lower():
                raise
            # No such split: take the dataset's first split instead.
            loaded = datasets.load_dataset(name, config or None)
    except Exception as exc:  # network, auth and unknown-dataset errors all end here
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputFileError(dataset_id, f"cannot load dataset ({message})") from None
    return _numbered(_split_rows(loaded, Path(dataset_id), split, exact_split))


def _split_rows(
    loaded: Any, label: Path, split: str, exact_split: bool = False
) -> Iterable[dict[str, Any]]:
    """The rows of a Dataset, or of `split` (else the first split) of a DatasetDict."""
    if isinstance(loaded, dict):  # DatasetDict and IterableDatasetDict are dicts of splits
        splits = list(loaded.keys())
        if not splits:
            raise InputFileError(label, "dataset has no splits")
        if exact_split and split not in splits:
            raise InputFileError(label, f"dataset has no split {split!r} ({', '.join(splits)})")
        loaded = loaded[split if split in splits else splits[0]]
    return iter(loaded)


def _numbered(rows: Iterable[dict[str, Any]]) -> Iterator[Row]:
    return ((i, row) for i, row in enumerate(rows, start=1))
