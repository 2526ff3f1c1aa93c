"""The pyarrow schema of each output table, by table name (declared once, on the record
classes in `mathsynth.records`)."""

from __future__ import annotations

import pyarrow as pa

from mathsynth.records import RECORD_TYPES

SCHEMAS: dict[str, pa.Schema] = {cls.table: cls.schema for cls in RECORD_TYPES}
TABLES: tuple[str, ...] = tuple(SCHEMAS)
