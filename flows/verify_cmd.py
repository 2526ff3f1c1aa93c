"""`mathsynth verify ...` commands (wiring only; the checking lives in verifiers/)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mathsynth.errors import InputFileError
from mathsynth.storage.jsonl import iter_jsonl, write_jsonl, write_jsonl_lines
from mathsynth.verifiers.answers import AnswerChecker

verify_app = typer.Typer()


@verify_app.callback()
def verify() -> None:
    """Check answers against gold answers."""
    # A callback keeps `verify` a command group even while it has a single command.


def _read_pairs(path: Path) -> list[tuple[Any, str, str]]:
    """(id, gold, pred) per row. Failure modes: InputFileError naming the file and line."""
    rows: list[tuple[Any, str, str]] = []
    for lineno, row in iter_jsonl(path):
        for key in ("gold", "pred"):
            if key not in row:
                raise InputFileError(path, f"missing field '{key}'", lineno)
            if not isinstance(row[key], str | int | float) or isinstance(row[key], bool):
                raise InputFileError(path, f"field '{key}' must be a string or number", lineno)
        rows.append((row.get("id"), str(row["gold"]), str(row["pred"])))
    return rows


@verify_app.command("answers")
def answers(
    file: Annotated[Path, typer.Argument(help='JSONL rows {"id", "gold", "pred"}.')],
    out: Annotated[Path | None, typer.Option("--out", help="Write JSONL here, not stdout.")] = None,
    timeout: Annotated[float, typer.Option(help="Seconds per math-verify check.")] = 2.0,
    workers: Annotated[int | None, typer.Option(help="Checker processes.")] = None,
) -> None:
    """Judge each prediction against its gold answer: correct, incorrect or error."""
    rows = _read_pairs(file)
    with AnswerChecker(timeout_s=timeout, workers=workers) as checker:
        verdicts = checker.check_many([(gold, pred) for _, gold, pred in rows])
    results = (
        {"id": row_id, "verdict": v.verdict, "detail": v.detail}
        for (row_id, _, _), v in zip(rows, verdicts, strict=True)
    )
    if out is None:
        write_jsonl_lines(results, sys.stdout)
    else:
        write_jsonl(results, out)
