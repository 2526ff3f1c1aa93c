"""mathsynth's own log lines in the Prefect UI: the `mathsynth` logger sent to the run's logs.

Prefect sends only its own loggers to the API. During a build, `forward_logs` adds Prefect's
API handler to the `mathsynth` logger (batch started / finished lines from the executor,
LLM client notes, warnings), so they appear on the Logs tab of the run that emitted them:
a batch's lines under its task run, build-level lines under the build's flow run. Records
from threads that carry no Prefect run context (the LLM client's event loop, sandbox slots)
are attributed to the build's flow run instead of being dropped with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prefect.logging.handlers import APILogHandler

LOGGER = "mathsynth"


def _in_run_context() -> bool:
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


class RunLogHandler(APILogHandler):
    """Prefect's API log handler, with a flow run to fall back on (see module docstring)."""

    def __init__(self, fallback_flow_run_id: Any = None) -> None:
        super().__init__()
        self.fallback_flow_run_id = fallback_flow_run_id

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "flow_run_id", None) is None and not _in_run_context():
            if self.fallback_flow_run_id is None:
                return  # nowhere to send it; the console handlers still see it
            record.flow_run_id = self.fallback_flow_run_id
        super().emit(record)


@contextmanager
def forward_logs(flow_run_id: Any = None, level: int = logging.INFO) -> Iterator[None]:
    """Send `mathsynth` log records at `level` and above to the Prefect API while inside."""
    logger = logging.getLogger(LOGGER)
    handler = RunLogHandler(flow_run_id)
    handler.setLevel(level)
    previous = logger.level
    if previous == logging.NOTSET or previous > level:
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


_process_handler: RunLogHandler | None = None


def forward_logs_in_process() -> None:
    """For worker processes (Dask): forward `mathsynth` records for the rest of the process's
    life. Records are attributed to the task run whose thread emitted them; others are not
    sent. Idempotent."""
    global _process_handler
    if _process_handler is not None:
        return
    _process_handler = RunLogHandler(None)
    _process_handler.setLevel(logging.INFO)
    logger = logging.getLogger(LOGGER)
    if logger.level == logging.NOTSET or logger.level > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(_process_handler)


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """Prefect's logger for the current run, or the plain `mathsynth` logger outside one."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(f"{LOGGER}.build")
