"""Persisting the MathScale concept graph as Parquet, so builds reuse and extend it (the
graph itself, `generators.mathscale.concept_graph`, turns rows back into a graph).

Layout under the given directory (typically OUT/concept_graph/):

    members.parquet   seed_id, kind, name, position   the source of truth, reloaded
    nodes.parquet     kind, name, seeds               for inspection (DuckDB, pandas)
    edges.parquet     kind_a, a, kind_b, b, count, weight

Each file is written to a temp name and renamed, members last, so a crash mid-save leaves
the previous members file (and therefore the previous graph) intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from mathsynth.errors import InputFileError

# Where a build keeps its concept graph, inside the output directory.
CONCEPT_GRAPH_DIR = "concept_graph"

MEMBERS_SCHEMA = pa.schema(
    [
        ("seed_id", pa.string()),
        ("kind", pa.string()),
        ("name", pa.string()),
        ("position", pa.int32()),
    ]
)
NODES_SCHEMA = pa.schema([("kind", pa.string()), ("name", pa.string()), ("seeds", pa.int32())])
EDGES_SCHEMA = pa.schema(
    [
        ("kind_a", pa.string()),
        ("a", pa.string()),
        ("kind_b", pa.string()),
        ("b", pa.string()),
        ("count", pa.int32()),
        ("weight", pa.float64()),
    ]
)


def save_concept_graph(
    directory: str | Path,
    *,
    members: list[dict[str, Any]],
    nodes: list[dict[str, Any]],
    edges: list[dict[str, Any]],
) -> Path:
    """Write a graph's three tables under `directory` (created if needed); returns it."""
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    _write(nodes, NODES_SCHEMA, root / "nodes.parquet")
    _write(edges, EDGES_SCHEMA, root / "edges.parquet")
    _write(members, MEMBERS_SCHEMA, root / "members.parquet")
    return root


def load_concept_graph_members(directory: str | Path) -> list[dict[str, Any]] | None:
    """The stored graph's member rows (its source of truth), or None when `directory` holds
    none yet.

    Failure mode: a members file that is not readable Parquet with the expected columns
    raises InputFileError naming it.
    """
    path = Path(directory) / "members.parquet"
    if not path.exists():
        return None
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise InputFileError(path, f"not a readable Parquet file ({exc})") from None
    missing = set(MEMBERS_SCHEMA.names) - set(table.column_names)
    if missing:
        raise InputFileError(path, f"missing columns {sorted(missing)}")
    return table.to_pylist()


def _write(rows: list[dict[str, Any]], schema: pa.Schema, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
