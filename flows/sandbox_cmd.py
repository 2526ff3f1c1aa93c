"""`mathsynth sandbox run FILE.jsonl`: run programs in the sandbox, one output row per input."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from mathsynth.errors import InputFileError
from mathsynth.storage.jsonl import iter_jsonl, write_jsonl, write_jsonl_lines
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob

sandbox_app = typer.Typer(help="Run untrusted Python programs in the sandbox.")


@sandbox_app.callback()
def _group() -> None:
    """Run untrusted Python programs in the sandbox."""


def read_jobs(path: Path) -> tuple[list[Any], list[SandboxJob]]:
    """Input rows {"id", "code"[, "kwargs"]} -> (original ids, jobs). Validates every row
    first; raises InputFileError naming the file and line."""
    ids: list[Any] = []
    jobs: list[SandboxJob] = []
    for line, row in iter_jsonl(path):
        if "id" not in row or not isinstance(row["id"], str | int) or isinstance(row["id"], bool):
            raise InputFileError(path, 'row needs an "id" (string or integer)', line)
        if not isinstance(row.get("code"), str):
            raise InputFileError(path, 'row needs a "code" string', line)
        kwargs = row.get("kwargs", {})
        if not isinstance(kwargs, dict):
            raise InputFileError(path, '"kwargs" must be a JSON object', line)
        ids.append(row["id"])
        jobs.append(SandboxJob(id=str(row["id"]), code=row["code"], kwargs=kwargs))
    return ids, jobs


@sandbox_app.command("run")
def run(
    file: Annotated[Path, typer.Argument(help='JSONL rows {"id", "code"}')],
    out: Annotated[Path | None, typer.Option("--out", help="write JSONL here, not stdout")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="default: one per CPU")] = None,
    timeout_s: Annotated[float, typer.Option("--timeout", min=0.01, help="seconds/program")] = 5.0,
    memory_mb: Annotated[int, typer.Option("--memory-mb", min=64)] = 1024,
) -> None:
    """Output rows {"id","status","result","stdout","error"}, one per input row, same order."""
    ids, jobs = read_jobs(file)
    with Sandbox(workers=workers, timeout_s=timeout_s, memory_mb=memory_mb) as sandbox:
        results = sandbox.run(jobs)
    rows = ({**r.to_row(), "id": original} for original, r in zip(ids, results, strict=True))
    if out is None:
        write_jsonl_lines(rows, sys.stdout)
    else:
        write_jsonl(rows, out)
