"""`mathsynth prompts list | show KIND | export DIR`: the LLM prompt templates, as data.

`export` writes every shipped template (and reply schema) in the layout `llm.prompts_dir`
reads, so a user copies them, edits the ones they want (another wording, another language,
few-shot turns), deletes the rest, and points `llm.prompts_dir` at the folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from mathsynth.errors import InputFileError
from mathsynth.generators.llm.prompts import PromptLibrary

prompts_app = typer.Typer(no_args_is_help=True, add_completion=False)
console = Console()

PromptsDir = Annotated[
    Path | None,
    typer.Option("--prompts-dir", help="overrides to apply (llm.prompts_dir)"),
]


def _library(prompts_dir: Path | None) -> PromptLibrary:
    if prompts_dir is not None and not prompts_dir.is_dir():
        raise InputFileError(prompts_dir, "not a folder")
    return PromptLibrary(prompts_dir)


@prompts_app.command("list")
def list_prompts(prompts_dir: PromptsDir = None) -> None:
    """Every prompt kind: its reply (JSON with a schema, or text), hash and source."""
    library = _library(prompts_dir)
    table = Table(title="prompt templates")
    for column in ("kind", "reply", "hash", "source"):
        table.add_column(column)
    for kind in library.kinds:
        prompt = library.get(kind)
        reply = "json (schema)" if prompt.schema is not None else "text"
        table.add_row(kind, reply, prompt.hash, prompt.origin)
    console.print(table)


@prompts_app.command("show")
def show_prompt(
    kind: Annotated[str, typer.Argument(help="a prompt kind, e.g. rise.self_edit")],
    prompts_dir: PromptsDir = None,
) -> None:
    """Print a prompt's template (as overridden, when --prompts-dir has it)."""
    typer.echo(_library(prompts_dir).get(kind).source, nl=False)


@prompts_app.command("export")
def export_prompts(
    folder: Annotated[Path, typer.Argument(help="where to write them (created if missing)")],
) -> None:
    """Write the shipped templates and schemas under FOLDER/<method>/ (existing files kept)."""
    if folder.exists() and not folder.is_dir():
        raise InputFileError(folder, "is a file, not a folder")
    written = PromptLibrary().export(folder)
    typer.echo(f"wrote {len(written)} files under {folder}; set llm.prompts_dir: {folder}")
