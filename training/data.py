"""A build's tables as `datasets.Dataset`s, in the columns the trainers read.

`sft` rows give `messages` (a user question, the assistant's solution), which TRL's
SFTTrainer takes as a conversational dataset; `dpo` rows give `prompt` / `chosen` /
`rejected` in TRL's conversational preference format, plus the texts and the edit spans the
RISE objective needs. The shards are read through `datasets`' Parquet loader, memory-mapped
(a dataset larger than memory trains as well as a small one).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mathsynth.errors import InputFileError

SFT_COLUMNS = ("messages",)
DPO_COLUMNS = ("prompt", "chosen", "rejected")
RISE_COLUMNS = (*DPO_COLUMNS, "chosen_text", "rejected_text", "spans")


def shard_files(out: Path, table: str) -> list[Path]:
    """The Parquet shards of `table` in the dataset directory `out`.

    Failure modes: InputFileError when `out` is not a directory or holds no shard of the table.
    """
    if not out.is_dir():
        raise InputFileError(out, "no such dataset directory (the --out of a `mathsynth build`)")
    files = sorted((out / table).glob("*.parquet"))
    if not files:
        raise InputFileError(
            out, f"no {table} shards ({table}/*.parquet): build with `mathsynth build --out {out}`"
        )
    return files


def load_table(out: Path, table: str, columns: tuple[str, ...]) -> Any:
    """The rows of `table` as a `datasets.Dataset` holding only `columns`.

    Failure modes: InputFileError (see `shard_files`), for shards without rows, or for shards
    that lack one of `columns` (made by an older mathsynth: rebuild them).
    """
    import datasets

    files = shard_files(out, table)
    loaded = datasets.load_dataset(
        "parquet", data_files=[str(f) for f in files], split="train"
    )  # fmt: skip
    missing = [c for c in columns if c not in loaded.column_names]
    if missing:
        raise InputFileError(
            out, f"{table} shards lack the column {missing[0]!r}: rebuild them with this version"
        )
    if len(loaded) == 0:
        raise InputFileError(out, f"the {table} shards hold no rows")
    return loaded.select_columns(list(columns))


def sample_rows(dataset: Any, max_rows: int | None, seed: int) -> Any:
    """`max_rows` rows of `dataset` drawn at random (all of them when None or more)."""
    if max_rows is None or max_rows >= len(dataset):
        return dataset
    return dataset.shuffle(seed=seed).select(range(max_rows))
