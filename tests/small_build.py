"""A small build made in-process by the executor (no Prefect, one sandbox worker): for tests
that judge what a finished build leaves behind (card, export) rather than the build itself."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mathsynth.config import load_config
from mathsynth.executor.local import BuildContext, finish_build, prepare_build, run_batch
from mathsynth.storage.catalog import Catalog
from mathsynth.verifiers.sandbox import Sandbox


def build_small(out: Path, **overrides: Any) -> dict[str, Any]:
    """Build `out` with a few bundled seeds (overrides as `load_config` takes them); returns
    the build report."""
    values = {"max_seeds": 3, "variants": 6, "batch_size": 6, "generators": "infinitymath,rise"}
    config = load_config(out=out, **{**values, **overrides})
    with Sandbox(workers=1) as sandbox:
        ctx = BuildContext(config, out, "run-1", Catalog(out), sandbox)
        batches, done = prepare_build(ctx, overwrite=False)
        return finish_build(ctx, [run_batch(ctx, b, done) for b in batches], 1.0)
