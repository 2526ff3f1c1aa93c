"""All file I/O: record schemas, shard writer/reader, the DuckDB catalog, JSONL, export."""
