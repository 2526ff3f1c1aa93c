"""Who may write into an output directory, and clearing it for `--overwrite`.

A dataset directory holds exactly one config's rows (never two mixed): the catalog records
the config hash, and a build with another hash is refused unless the user asks to replace it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from mathsynth.errors import DatasetConflictError
from storage.catalog import CATALOG_NAME, Catalog
from storage.concept_graph_store import CONCEPT_GRAPH_DIR
from storage.schemas import TABLES

# Derived state that belongs to one dataset and goes with it on --overwrite. The LLM request
# cache is deliberately not listed: it is keyed by request content, so it stays valid under
# any config and keeps a replaced dataset's calls from being paid for twice.
DATASET_DIRS = (*TABLES, CONCEPT_GRAPH_DIR)


def check_output(out: Path, config_hash: str, overwrite: bool) -> None:
    """Refuse a directory that may not receive this build (read-only check).

    Failure modes: a non-empty directory that is not a mathsynth dataset, or one built from a
    different config, raises DatasetConflictError unless `overwrite`.
    """
    catalog = out / CATALOG_NAME
    if overwrite or not out.exists():
        return
    if any(out.iterdir()) and not catalog.exists():
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
        for name in DATASET_DIRS:
            shutil.rmtree(out / name, ignore_errors=True)
        catalog.unlink(missing_ok=True)
