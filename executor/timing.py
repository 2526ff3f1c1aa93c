"""Where a batch's time goes: waiting on the LLM, the sandbox, answer checks, Lean, writing.

A build's shared resources are wrapped in `Timed` proxies (by `executor.local.open_context`);
every method call on one adds its wall time to the clock of the batch running in the calling
thread (`batch_clock`). A batch runs in one thread from its first stage to its last (stages
are synchronous and the LLM client blocks the caller until its requests are answered), so
the clock of each batch is its own even when several batches run at once. Calls made outside
a batch (planning, seed templating) are not counted.

The totals land in the batch's stats as `time_ms.<part>` (milliseconds, so they sum like
every other counter), which is what the build report and bench/llm_build.py print.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

# Stats key prefix of a batch's time split.
TIME_PREFIX = "time_ms."

_local = threading.local()


@contextmanager
def batch_clock() -> Iterator[Counter[str]]:
    """Seconds per part for the calls this thread makes inside the block."""
    previous = getattr(_local, "clock", None)
    clock: Counter[str] = Counter()
    _local.clock = clock
    try:
        yield clock
    finally:
        _local.clock = previous


def charge(part: str, seconds: float) -> None:
    """Add `seconds` to `part` on this thread's batch clock (no clock: nothing)."""
    clock = getattr(_local, "clock", None)
    if clock is not None:
        clock[part] += seconds


@contextmanager
def timed(part: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        charge(part, time.perf_counter() - start)


class Timed:
    """A transparent proxy whose method calls are charged to `part` (see module docstring).

    Attributes that are not callable pass through unchanged, so code that reads `llm.model`
    or `llm.stats` sees the real object's values.
    """

    __slots__ = ("_part", "_target")

    def __init__(self, target: Any, part: str) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_part", part)

    @property
    def wrapped(self) -> Any:
        return object.__getattribute__(self, "_target")

    def __getattr__(self, name: str) -> Any:
        value = getattr(object.__getattribute__(self, "_target"), name)
        if not callable(value):
            return value
        part = object.__getattribute__(self, "_part")

        def call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return value(*args, **kwargs)
            finally:
                charge(part, time.perf_counter() - start)

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_target"), name, value)

    def __repr__(self) -> str:
        return f"Timed({object.__getattribute__(self, '_target')!r})"


def unwrap(resource: Any) -> Any:
    """The object behind a `Timed` proxy (or `resource` itself)."""
    return resource.wrapped if isinstance(resource, Timed) else resource


def as_stats(clock: Counter[str]) -> dict[str, int]:
    """A clock as integer stats: {"time_ms.<part>": milliseconds}."""
    return {f"{TIME_PREFIX}{part}": round(s * 1000) for part, s in clock.items() if s > 0}


def time_split(stats: dict[str, int]) -> dict[str, float]:
    """Seconds per part from (summed) stats; `total` is the batches' own wall time."""
    return {
        key.removeprefix(TIME_PREFIX): value / 1000
        for key, value in stats.items()
        if key.startswith(TIME_PREFIX)
    }
