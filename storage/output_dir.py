"""Who may write into an output directory, claiming it for a build, and clearing it for
`--overwrite`.

A dataset directory holds exactly one config's rows (never two mixed): the catalog records
the config hash, and a build with another hash is refused unless the user asks to replace it.
A build that fails before its first batch is written gives the directory back as it found it
(`OutputClaim.restore`), so a failed start never blocks the next build.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mathsynth.errors import DatasetConflictError, MathsynthError, OutputDirError
from mathsynth.storage.card import CARD_NAME
from mathsynth.storage.catalog import CATALOG_NAME, Catalog
from mathsynth.storage.concept_graph_store import CONCEPT_GRAPH_DIR
from mathsynth.storage.schemas import TABLES

# The LLM request cache, next to the dataset it was paid for.
LLM_CACHE_NAME = "llm_cache.sqlite"
# Derived state that belongs to one dataset and goes with it on --overwrite. The LLM request
# cache is deliberately not listed: it is keyed by request content, so it stays valid under
# any config and keeps a replaced dataset's calls from being paid for twice.
DATASET_DIRS = (*TABLES, CONCEPT_GRAPH_DIR)
# Files a directory may hold and still count as mathsynth's own (a cache kept by a failed
# start, SQLite's WAL companions).
_OWN_FILES = {LLM_CACHE_NAME, f"{LLM_CACHE_NAME}-wal", f"{LLM_CACHE_NAME}-shm", ".tmp"}


def check_writable(out: Path) -> None:
    """Refuse an output path that cannot become a writable directory (nothing is left behind).

    Failure modes (OutputDirError, one line naming the path): `out` or one of its parents is
    a file; the nearest existing directory does not accept new files (permissions, an
    immutable or read-only directory, a pseudo file system such as /proc or /sys).
    """
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"--out {out}: is a file, not a directory")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputDirError(f"--out {out}: {existing} is a file, not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".mathsynth-probe-", dir=existing)
    except OSError as exc:
        raise OutputDirError(f"--out {out}: cannot write in {existing} ({_reason(exc)})") from None
    os.close(fd)
    os.unlink(probe)


def _reason(exc: OSError) -> str:
    if exc.errno in (errno.EPERM, errno.EACCES):
        return "permission denied (read-only, immutable or not yours)"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    if exc.errno == errno.ENOENT:
        return "a pseudo file system that holds no files"
    return exc.strerror or str(exc)


def check_output(out: Path, config_hash: str, overwrite: bool) -> None:
    """Refuse a directory that may not receive this build (read-only check).

    Failure modes: OutputDirError (see `check_writable`); a non-empty directory that is not a
    mathsynth dataset, or one built from a different config, raises DatasetConflictError
    unless `overwrite`.
    """
    check_writable(out)
    catalog = out / CATALOG_NAME
    if overwrite or not out.exists():
        return
    foreign = [p for p in out.iterdir() if p.name not in _OWN_FILES]
    if foreign and not catalog.exists():
        raise DatasetConflictError(
            f"{out} is not empty and holds no mathsynth dataset; choose another --out "
            "or pass --overwrite"
        )
    stored = Catalog(out).stored_config_hash() if catalog.exists() else None
    if stored is not None and stored != config_hash:
        raise DatasetConflictError(
            f"{out} holds a dataset built with config {stored}, not {config_hash}; "
            "choose another --out or pass --overwrite to replace it"
        )


def clear_replaced_dataset(out: Path, config_hash: str) -> None:
    """For --overwrite: remove the old dataset's tables and catalog when its config differs
    (a dataset of the same config is resumed, not cleared)."""
    catalog = out / CATALOG_NAME
    if not out.exists():
        return
    stored = Catalog(out).stored_config_hash() if catalog.exists() else None
    if stored != config_hash:
        # Batches submitted to an LLM Batch API are paid for whatever the config: keep them.
        jobs = Catalog(out).llm_batches() if catalog.exists() else []
        for name in DATASET_DIRS:
            shutil.rmtree(out / name, ignore_errors=True)
        catalog.unlink(missing_ok=True)
        Catalog(out).restore_llm_batches(jobs)
        (out / CARD_NAME).unlink(missing_ok=True)  # it described the replaced dataset


@dataclass(frozen=True)
class OutputClaim:
    """What an output path looked like before a build touched it.

    `restore()` removes what the build added: the directories it created (the topmost new
    ancestor of `out`) or the new entries of a directory that already existed. A request
    cache that holds answered requests is kept: those were paid for; so is a new catalog that
    holds LLM batches still running (a rerun collects them instead of paying again).
    """

    out: Path
    created_root: Path | None
    entries: frozenset[str]

    @classmethod
    def take(cls, out: Path) -> OutputClaim:
        root = None
        probe = out
        while not probe.exists() and probe != probe.parent:
            root = probe
            probe = probe.parent
        entries = frozenset(os.listdir(out)) if out.is_dir() else frozenset()
        return cls(out, root, entries)

    def restore(self) -> None:
        if not self.out.is_dir():
            return
        keep_cache = _holds_answers(self.out / LLM_CACHE_NAME)
        keep_catalog = _holds_running_batches(self.out)
        keep_cache = keep_cache or keep_catalog
        for entry in sorted(os.listdir(self.out)):
            if entry in self.entries or (keep_cache and entry.startswith(LLM_CACHE_NAME)):
                continue
            if keep_catalog and entry.startswith(CATALOG_NAME):
                continue
            path = self.out / entry
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        if self.created_root is not None and not keep_cache:
            shutil.rmtree(self.created_root, ignore_errors=True)


def _holds_running_batches(out: Path) -> bool:
    if not (out / CATALOG_NAME).exists():
        return False
    try:
        return bool(Catalog(out).llm_batches(status="submitted"))
    except MathsynthError:
        return True  # cannot tell: keep it


def _holds_answers(cache: Path) -> bool:
    if not cache.exists():
        return False
    try:
        con = sqlite3.connect(f"file:{cache}?mode=ro", uri=True)
        try:
            return bool(con.execute("SELECT count(*) FROM samples").fetchone()[0])
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return True  # not ours to judge: keep it
