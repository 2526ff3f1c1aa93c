"""Killable math-verify worker processes with a hard per-pair timeout.

Each worker is its own process group (so a kill also takes anything it spawned), capped with
RLIMIT_AS, and replaced by a fresh warm one after a kill or a crash.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

from mathsynth.errors import MathsynthError

_STARTUP_TIMEOUT_S = 60.0


class AnswerWorkerError(MathsynthError):
    """A worker process could not be started (the interpreter or math-verify is broken)."""


class AnswerWorker:
    """One worker process. Not thread-safe: the owner serialises calls."""

    def __init__(self, memory_mb: int) -> None:
        self._memory_mb = memory_mb
        self._proc: subprocess.Popen[bytes] | None = None
        self._buffer = b""
        self._ready = False
        self.restarts = 0
        self._spawn()

    def _spawn(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "mathsynth.verifiers.answers.worker", str(self._memory_mb)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._buffer = b""
        self._ready = False

    def _read_line(self, deadline: float) -> bytes | None:
        """Next line from the worker; None on timeout or if the worker died."""
        assert self._proc is not None and self._proc.stdout is not None
        fd = self._proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([fd], [], [], remaining)
            if not readable:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                return None
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        line = self._read_line(time.monotonic() + _STARTUP_TIMEOUT_S)
        if line is None or json.loads(line) != {"ready": True}:
            self.kill()
            raise AnswerWorkerError(
                "answer checker worker failed to start (is math-verify installed?)"
            )
        self._ready = True

    def kill(self) -> None:
        """Kill the whole process group and reap it."""
        if self._proc is None:
            return
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(self._proc.pid, signal.SIGKILL)
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                stream.close()
        self._proc = None

    def _restart(self) -> None:
        self.kill()
        self.restarts += 1
        self._spawn()

    def check(self, pairs: Sequence[tuple[str, str]], timeout_s: float) -> list[tuple[str, str]]:
        """(verdict, detail) per pair, in order. A pair that runs past timeout_s, or that
        crashes the worker, gets an `error` verdict; the worker is replaced and the remaining
        pairs are resent to the new one.

        Failure modes: raises AnswerWorkerError if a (re)started worker never gets ready.
        """
        results: list[tuple[str, str]] = []
        while len(results) < len(pairs):
            if self._proc is None:
                self._spawn()
            self._ensure_ready()
            assert self._proc is not None and self._proc.stdin is not None
            todo = pairs[len(results) :]
            try:
                self._proc.stdin.write(json.dumps({"pairs": list(todo)}).encode() + b"\n")
                self._proc.stdin.flush()
            except BrokenPipeError:
                self._restart()
                continue
            for _ in todo:
                start = time.monotonic()
                line = self._read_line(start + timeout_s)
                if line is None:
                    timed_out = time.monotonic() - start >= timeout_s
                    self._restart()
                    if timed_out:
                        results.append(("error", f"timed out after {timeout_s:g}s"))
                    else:
                        results.append(("error", "checker process died (memory or crash)"))
                    break
                reply = json.loads(line)
                results.append((reply["verdict"], reply["detail"]))
        return results

    def close(self) -> None:
        self.kill()
