"""`mathsynth decouple FILE.jsonl`: GSM8K-style seeds -> templates, or the reason why not."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from mathsynth.generators.infinitymath.decouple import DecoupleFailure
from mathsynth.generators.infinitymath.decouple_check import decouple_many
from mathsynth.generators.seeds.readers import read_seeds
from mathsynth.records import Rejection
from mathsynth.seeds import Seed, SeedSpec
from mathsynth.storage.jsonl import write_jsonl, write_jsonl_lines
from mathsynth.verifiers.sandbox import Sandbox


def decouple_command(
    file: Annotated[Path, typer.Argument(help="GSM8K-style JSONL (question, answer[, id])")],
    out: Annotated[Path | None, typer.Option("--out", help="write JSONL here, not stdout")] = None,
) -> None:
    """One output row per input row: {"seed_id", "decoupled": true, "template", "solution",
    "program", "variables", "constraints", ...} or {"seed_id", "decoupled": false, "reason",
    "detail"}. A summary line goes to stderr."""
    # Read everything first: a file that turns out not to be JSONL must leave nothing behind.
    items = list(read_seeds(file))
    seeds = [item for item in items if isinstance(item, Seed)]
    with Sandbox() as sandbox:
        outcomes = dict(zip(map(id, seeds), decouple_many(seeds, sandbox), strict=True))
    rows = list(_rows(items, {k: v[1] for k, v in outcomes.items()}))
    if out is None:
        write_jsonl_lines(rows, sys.stdout)
    else:
        write_jsonl(rows, out)
    done = sum(row["decoupled"] for row in rows)
    typer.echo(f"decoupled {done} of {len(rows)} seeds", err=True)


def _rows(
    items: Iterable[Seed | Rejection], outcomes: dict[int, SeedSpec | DecoupleFailure]
) -> Iterator[dict[str, Any]]:
    for item in items:
        if isinstance(item, Rejection):
            yield {
                "seed_id": item.record.get("id"),
                "decoupled": False,
                "reason": item.reason,
                "detail": item.detail,
            }
            continue
        outcome = outcomes[id(item)]
        if isinstance(outcome, DecoupleFailure):
            yield {
                "seed_id": item.id,
                "decoupled": False,
                "reason": outcome.reason,
                "detail": f"{item.source}:{item.line}: {outcome.detail}",
            }
            continue
        yield {
            "seed_id": item.id,
            "decoupled": True,
            "template": outcome.question,
            "solution": outcome.solution,
            "program": outcome.program,
            "variables": {
                name: spec.model_dump(exclude_none=True) for name, spec in outcome.variables.items()
            },
            "constraints": outcome.constraints,
            "whole": outcome.whole,
            "answer_type": outcome.answer_type,
            "answer": outcome.answer,
        }
