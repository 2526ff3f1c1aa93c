"""Seeds: the bundled seed library and (later) readers for GSM8K / MATH / Parquet / HF ids."""

from generators.seeds.spec import (
    Seed,
    SeedSpec,
    SeedTask,
    VariableSpec,
    bundled_seeds,
    load_library,
)

__all__ = ["Seed", "SeedSpec", "SeedTask", "VariableSpec", "bundled_seeds", "load_library"]
