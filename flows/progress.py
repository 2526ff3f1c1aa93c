"""Runs the build flow under a rich progress bar fed by the flow's batch listener."""

from __future__ import annotations

import logging
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mathsynth.config import BuildConfig
from mathsynth.errors import MathsynthError
from storage.schemas import TABLES


class _HideExpectedErrors(logging.Filter):
    """Drop Prefect's console records about a MathsynthError: the CLI reports those itself as
    one line, and a traceback would bury it. They still reach the Prefect API (the UI)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, MathsynthError):
            return False
        message = record.getMessage()
        return not (record.levelno >= logging.ERROR and "Finished in state Failed" in message)


def quiet_expected_errors() -> None:
    from prefect.logging.handlers import PrefectConsoleHandler

    loggers = [
        logging.getLogger(),
        *(
            logging.getLogger(name)
            for name in list(logging.root.manager.loggerDict)
            if name.startswith("prefect")
        ),
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.addFilter(_HideExpectedErrors())


def run_with_progress(config: BuildConfig, *, overwrite: bool, console: Console) -> dict[str, Any]:
    from flows.build import add_progress_listener, run_build

    quiet_expected_errors()

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
            return run_build(config, overwrite=overwrite)
    finally:
        unsubscribe()
