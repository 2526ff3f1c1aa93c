"""Which files of a dataset directory are published, and a clean local copy of them.

Published: the card `README.md` and the Parquet shards of sft, dpo, formal and rejected —
exactly what the card's `configs:` globs name. Never published: the catalog, the concept
graph, temp files, and above all the LLM request cache (`llm_cache.sqlite`), which holds
every prompt and reply.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

from mathsynth.errors import MathsynthError
from mathsynth.storage.card import CARD_NAME, write_card
from mathsynth.storage.catalog import CATALOG_NAME, Catalog
from mathsynth.storage.schemas import TABLES

# Patterns (relative to the dataset dir, fnmatch style) of every published file.
PUBLISHED_PATTERNS = [CARD_NAME, *(f"{table}/part-*.parquet" for table in TABLES)]
DATA_PATTERNS = [f"{table}/*.parquet" for table in TABLES]


class ExportError(MathsynthError):
    """A dataset cannot be exported (not a finished dataset, a bad destination, the Hub
    refused or could not be reached)."""


def publishable_files(out: Path) -> list[str]:
    """Relative POSIX paths of the files an export publishes, card first, then shards."""
    out = Path(out)
    files = [CARD_NAME] if (out / CARD_NAME).is_file() else []
    for table in TABLES:
        files += sorted(p.relative_to(out).as_posix() for p in (out / table).glob("part-*.parquet"))
    return files


def prepare_export(out: Path, repo_id: str | None = None) -> list[str]:
    """Check that `out` is a finished dataset, rewrite its card (its example loads `repo_id`
    when given), return the files to publish.

    Failure modes: ExportError when `out` is not a mathsynth dataset, when its last build has
    not finished (still running, or crashed: rerun the build to finish it) or when it holds
    no shard at all.
    """
    out = Path(out)
    if not (out / CATALOG_NAME).is_file():
        raise ExportError(f"{out}: not a mathsynth dataset (no {CATALOG_NAME})")
    last = Catalog(out).query("SELECT status FROM builds ORDER BY started_at DESC LIMIT 1")
    if not last:
        raise ExportError(f"{out}: no build has run in this dataset")
    if last[0][0] != "completed":
        raise ExportError(
            f"{out}: the last build has not finished (status {last[0][0]}); rerun the same "
            "`mathsynth build` to finish it, then export"
        )
    write_card(out, repo_id)
    files = publishable_files(out)
    if len(files) < 2:
        raise ExportError(f"{out}: the dataset holds no rows to publish")
    return files


def export_local(out: Path, dest: Path) -> list[str]:
    """Copy the published files of `out` to `dest` (created; it must not exist or be empty)
    and return them. The copy is made next to `dest` and renamed into place, so an
    interrupted export leaves no half-filled `dest`.

    Failure modes: ExportError (see `prepare_export`; `dest` is a file, a non-empty
    directory, inside `out`, or cannot be written).
    """
    out, dest = Path(out), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ExportError(f"{dest}: exists and is not an empty directory; choose a new one")
    if dest.resolve().is_relative_to(out.resolve()):
        raise ExportError(f"{dest}: is inside the dataset directory {out}")
    files = prepare_export(out)
    staging = dest.parent / f".{dest.name}.export-{uuid.uuid4().hex[:8]}"
    try:
        for name in files:
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(out / name, target)
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except OSError as exc:
        raise ExportError(f"{dest}: cannot write the copy ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files
