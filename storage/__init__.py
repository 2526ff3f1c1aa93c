"""All file I/O of a dataset: shards, the DuckDB catalog, output-dir rules, cross-batch dedup,
the concept-graph store, stats, JSONL.

Two readers live elsewhere, beside the code that gives their content meaning: dataset seed
rows (`generators.seeds.readers`, which parses GSM8K / MATH formats into seeds, reading JSONL
through `storage.jsonl`) and the LLM request cache (`generators.llm.cache`, SQLite owned by
the client that fills it).
"""
