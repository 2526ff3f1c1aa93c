"""Runs the build flow under a rich progress bar fed by the flow's batch listener."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mathsynth.config import BuildConfig
from mathsynth.storage.schemas import TABLES


def run_with_progress(config: BuildConfig, *, overwrite: bool, console: Console) -> dict[str, Any]:
    from mathsynth.flows.build import add_progress_listener, check_inputs, run_build

    # Refused input is one error line, with no progress bar drawn before it.
    check_inputs(config, overwrite)

    progress = Progress(
        TextColumn("[bold]building[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("batches · {task.fields[rows]} rows"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    bar = progress.add_task(str(config.out_dir), total=None, rows=0)
    rows = 0

    def on_batch(summary: Any, done: int, total: int) -> None:
        nonlocal rows
        rows += sum(n for table, n in summary.counts.items() if table in TABLES)
        progress.update(bar, completed=done, total=total, rows=rows)

    unsubscribe = add_progress_listener(on_batch)
    try:
        with progress:
            return run_build(config, overwrite=overwrite, checked=True)
    finally:
        unsubscribe()
