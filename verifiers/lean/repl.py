"""The REPL backend: a small pool of Lean REPL processes, each with the header loaded once.

Per item: a free REPL runs the code in its header environment and the reply goes through the
acceptance rule. A command that times out is `failed` (Lean could not settle it within the
budget) and its REPL is killed; the slot starts a fresh one for the next item. A REPL that dies
or prints non-JSON marks that item `unchecked` with the reason. A REPL that cannot be started
(or fails `max_faults` times in a row) disables the backend: the error is logged once and every
later item is `unchecked` with it, so the build continues without claiming any Lean result.
"""

from __future__ import annotations

import logging
import queue
import shlex
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from mathsynth.verifiers.lean.acceptance import judge
from mathsynth.verifiers.lean.backend import HEADER, LeanItem, LeanResult, unchecked
from mathsynth.verifiers.lean.repl_process import (
    ReplError,
    ReplProcess,
    ReplStartError,
    ReplTimeoutError,
)

logger = logging.getLogger("mathsynth.lean")


class _Slot:
    """One pool position; holds a started REPL or None until one is needed."""

    def __init__(self) -> None:
        self.process: ReplProcess | None = None


class ReplBackend:
    """Checks items on `pool_size` REPLs started with `command` (a shell-style command line).

    Thread-safe: concurrent `check` calls share the pool. REPLs start lazily on first use and
    are recycled after `recycle_after` commands to bound memory growth.
    """

    name = "repl"

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        header: str = HEADER,
        timeout_s: float = 60.0,
        start_timeout_s: float = 600.0,
        pool_size: int = 1,
        memory_mb: int | None = 8192,
        recycle_after: int = 200,
        max_faults: int = 3,
        cwd: str | None = None,
    ) -> None:
        self.argv = shlex.split(command) if isinstance(command, str) else list(command)
        if not self.argv:
            raise ReplStartError("empty lean repl command")
        self.header = header
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.pool_size = pool_size
        self.memory_mb = memory_mb
        self.recycle_after = recycle_after
        self.max_faults = max_faults
        self.cwd = cwd
        self.starts = 0
        self._disabled: str | None = None
        self._faults = 0
        self._lock = threading.Lock()
        self._idle: queue.Queue[_Slot] = queue.Queue()
        self._slots = [_Slot() for _ in range(pool_size)]
        for slot in self._slots:
            self._idle.put(slot)
        self._executor = ThreadPoolExecutor(pool_size, thread_name_prefix="lean-repl")

    @property
    def disabled_reason(self) -> str | None:
        """Why the backend stopped checking, or None while it works."""
        return self._disabled

    def check(self, items: list[LeanItem]) -> list[LeanResult]:
        return list(self._executor.map(self._check_one, items))

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        for slot in self._slots:
            if slot.process is not None:
                slot.process.close()
                slot.process = None

    def __enter__(self) -> ReplBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_one(self, item: LeanItem) -> LeanResult:
        slot = self._idle.get()
        try:
            return self._check_on(slot, item)
        finally:
            self._idle.put(slot)

    def _check_on(self, slot: _Slot, item: LeanItem) -> LeanResult:
        if self._disabled is not None:
            return unchecked(item, self._disabled)
        if slot.process is None:
            try:
                slot.process = self._start()
            except ReplStartError as exc:
                self._disable(str(exc))
                return unchecked(item, str(exc))
        process = slot.process
        try:
            reply = process.run(item.code)
        except ReplTimeoutError as exc:
            # The REPL is killed on timeout; the statement itself is what took too long.
            slot.process = None
            return LeanResult(item.id, "failed", [f"error: {exc}"])
        except ReplError as exc:
            slot.process = None
            self._fault(str(exc))
            return unchecked(item, str(exc))
        with self._lock:
            self._faults = 0
        if process.commands >= self.recycle_after:
            process.close()
            slot.process = None
        return judge(item, reply)

    def _start(self) -> ReplProcess:
        process = ReplProcess(
            self.argv,
            header=self.header,
            timeout_s=self.timeout_s,
            start_timeout_s=self.start_timeout_s,
            memory_mb=self.memory_mb,
            cwd=self.cwd,
        )
        process.start()
        with self._lock:
            self.starts += 1
        return process

    def _fault(self, reason: str) -> None:
        with self._lock:
            self._faults += 1
            first = self._faults == 1
            give_up = self._faults >= self.max_faults
        if first:
            logger.error("lean repl failed: %s (the item is marked unchecked)", reason)
        if give_up:
            self._disable(f"lean repl failed {self.max_faults} times in a row; last: {reason}")

    def _disable(self, reason: str) -> None:
        with self._lock:
            if self._disabled is not None:
                return
            self._disabled = reason
        logger.error("lean backend disabled, formal rows will be unchecked: %s", reason)
