"""pyarrow schemas of the four output tables (columns as in DESIGN.md's data model).

JSON-object columns (`variables`, `provenance`, `record`) are JSON strings: their keys vary
per generator, and a string keeps Parquet, DuckDB (`json_extract`) and `datasets` happy
without a schema per generator. `messages` is a list of {role, content} structs, the shape
TRL's SFTTrainer reads directly.
"""

from __future__ import annotations

import pyarrow as pa

VERIFICATION = pa.struct(
    [("status", pa.string()), ("checker", pa.string()), ("detail", pa.string())]
)
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])

SFT = pa.schema(
    [
        ("id", pa.string()),
        ("generator", pa.string()),
        ("method", pa.string()),
        ("seed_id", pa.string()),
        ("parent_id", pa.string()),
        ("question", pa.string()),
        ("solution", pa.string()),
        ("answer", pa.string()),
        ("program", pa.string()),
        ("variables", pa.string()),
        ("concepts", pa.list_(pa.string())),
        ("difficulty", pa.int32()),
        ("messages", pa.list_(MESSAGE)),
        ("verification", VERIFICATION),
        ("provenance", pa.string()),
        ("tokens_in", pa.int64()),
        ("tokens_out", pa.int64()),
    ]
)

DPO = pa.schema(
    [
        ("id", pa.string()),
        ("source_id", pa.string()),
        ("prompt", pa.string()),
        ("chosen", pa.string()),
        ("rejected", pa.string()),
        ("error_type", pa.string()),
        ("edit_start", pa.int32()),
        ("edit_end", pa.int32()),
        ("step_index", pa.int32()),
        ("verification", VERIFICATION),
        ("provenance", pa.string()),
    ]
)

FORMAL = pa.schema(
    [
        ("id", pa.string()),
        ("source_id", pa.string()),
        ("informal", pa.string()),
        ("header", pa.string()),
        ("formal_statement", pa.string()),
        ("proof", pa.string()),
        ("lean_status", pa.string()),
        ("lean_messages", pa.list_(pa.string())),
        ("provenance", pa.string()),
    ]
)

REJECTED = pa.schema(
    [
        ("id", pa.string()),
        ("stage", pa.string()),
        ("reason", pa.string()),
        ("detail", pa.string()),
        ("record", pa.string()),
    ]
)

SCHEMAS: dict[str, pa.Schema] = {"sft": SFT, "dpo": DPO, "formal": FORMAL, "rejected": REJECTED}
TABLES: tuple[str, ...] = tuple(SCHEMAS)
