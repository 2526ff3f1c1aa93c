"""`mathsynth export hub REPO_ID` and `mathsynth export local DIR`: publish a finished
dataset (its card and shards, nothing else) to the Hugging Face Hub or to a clean folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

export_app = typer.Typer(help="Publish a dataset: the Hugging Face Hub, or a clean copy.")
console = Console()

OutOption = Annotated[
    Path | None,
    typer.Option(help="The dataset: a build's --out directory (default ./data/<name>)."),
]


@export_app.callback()
def _group() -> None:
    """Publish a dataset: the Hugging Face Hub, or a clean copy."""


def _dataset(out: Path | None) -> Path:
    if out is not None:
        return out
    from mathsynth.config import load_config

    return load_config().out_dir


@export_app.command("hub")
def hub(
    repo_id: Annotated[
        str, typer.Argument(metavar="REPO_ID", help="Dataset repo, e.g. your-name/math-sft.")
    ],
    out: OutOption = None,
    private: Annotated[bool, typer.Option(help="Create the repo private.")] = False,
    revision: Annotated[
        str | None, typer.Option(help="Branch to commit to (created when missing).")
    ] = None,
) -> None:
    """Upload the card and data files to a Hub dataset repo (created when missing). The token
    comes from HF_TOKEN or `hf auth login`; rerun to finish an interrupted upload."""
    from mathsynth.storage.hub import export_hub

    result = export_hub(_dataset(out), repo_id, private=private, revision=revision)
    console.print(
        f"exported {len(result['files'])} files to {result['url']} "
        f"(revision {result['revision']}, commit {result['commit']})",
        highlight=False,
        soft_wrap=True,
    )


@export_app.command("local")
def local(
    dest: Annotated[
        Path, typer.Argument(metavar="DIR", help="New or empty directory for the copy.")
    ],
    out: OutOption = None,
) -> None:
    """Copy the card and data files (no catalog, concept graph or LLM cache) to DIR."""
    from mathsynth.storage.publish import export_local

    files = export_local(_dataset(out), dest)
    console.print(f"copied {len(files)} files to {dest}", highlight=False, soft_wrap=True)
