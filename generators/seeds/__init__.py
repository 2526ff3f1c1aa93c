"""Seeds: the bundled library (`library`) and readers for GSM8K / MATH rows from JSONL,
Parquet, a saved dataset or a Hub id (`readers`). The types are `mathsynth.seeds`."""
