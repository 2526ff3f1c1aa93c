"""One Lean REPL subprocess speaking the leanprover-community/repl JSON protocol.

Protocol (repl README and REPL/Main.lean): each command is one JSON object followed by a blank
line, `{"cmd": "...", "env": n}`; without `env` a fresh environment is made (only then may the
code `import`). Each reply is a JSON object (pretty-printed over several lines) followed by a
blank line: `{"env": n, "messages": [...], "sorries": [...]}` or `{"message": "..."}` for a
command the REPL could not run.

The header runs once at start and every later command reuses its environment. Timeouts are
enforced here, by the parent: a command that does not answer in time gets the process group
killed (the REPL cannot be interrupted mid-command over the protocol). The memory cap is an
RLIMIT_AS on the REPL process, set with `prlimit` right after the spawn rather than in
`preexec_fn`, which is unsafe when other threads are running.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from mathsynth.verifiers.lean.backend import LeanBackendError

_READ_CHUNK = 1 << 16
# A reply larger than this is treated as garbage rather than buffered without bound.
_MAX_REPLY_BYTES = 64 << 20


class ReplError(LeanBackendError):
    """The REPL process misbehaved; the process is unusable afterwards."""


class ReplStartError(ReplError):
    """The REPL command could not be started or its header was not accepted."""


class ReplTimeoutError(ReplError):
    """A command did not answer within its time limit (the process has been killed)."""


class ReplDiedError(ReplError):
    """The REPL process exited while a command was pending."""


class ReplProtocolError(ReplError):
    """The REPL printed something that is not a JSON reply."""


class ReplProcess:
    """A started REPL with its header environment loaded.

    Failure modes: `start()` raises ReplStartError (executable missing, exits at once, non-JSON
    output, header errors, header timeout); `run()` raises ReplTimeoutError, ReplDiedError or
    ReplProtocolError, after which the process is closed and a new one must be started.
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        header: str,
        timeout_s: float,
        start_timeout_s: float,
        memory_mb: int | None,
        cwd: str | None = None,
    ) -> None:
        self.argv = list(argv)
        self.header = header
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.memory_mb = memory_mb
        self.cwd = cwd
        self.commands = 0
        self.env: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        # Lives as long as the process; closed in close().
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self._buffer = b""
        self._selector: selectors.BaseSelector | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                cwd=self.cwd,
                start_new_session=True,
            )
        except FileNotFoundError:
            self.close()
            raise ReplStartError(f"lean repl command not found: {self.argv[0]!r}") from None
        except OSError as exc:
            self.close()
            raise ReplStartError(f"cannot start lean repl {self.argv[0]!r}: {exc}") from None
        self._limit_memory()
        assert self._proc.stdout is not None
        os.set_blocking(self._proc.stdout.fileno(), False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._proc.stdout, selectors.EVENT_READ)
        if not self.header.strip():
            return
        try:
            reply = self._request({"cmd": self.header}, self.start_timeout_s)
        except ReplTimeoutError:
            raise ReplStartError(
                f"lean repl did not answer the header within {self.start_timeout_s:g}s"
            ) from None
        except ReplError as exc:
            raise ReplStartError(f"lean repl did not start: {exc}") from None
        errors = [m for m in reply.get("messages") or [] if m.get("severity") == "error"]
        if "env" not in reply or errors:
            detail = errors[0].get("data", "") if errors else reply.get("message", reply)
            self.close()
            raise ReplStartError(f"lean header failed: {str(detail).splitlines()[0]}")
        self.env = int(reply["env"])

    def run(self, code: str) -> dict[str, Any]:
        """Run `code` in the header environment and return the raw reply."""
        command: dict[str, Any] = {"cmd": code}
        if self.env is not None:
            command["env"] = self.env
        self.commands += 1
        return self._request(command, self.timeout_s)

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        self._stderr.close()

    def _limit_memory(self) -> None:
        if self.memory_mb is None or self._proc is None:
            return
        limit = self.memory_mb * 1024 * 1024
        # Linux only; elsewhere the REPL simply runs without the cap.
        with contextlib.suppress(AttributeError, OSError, ValueError):
            resource.prlimit(self._proc.pid, resource.RLIMIT_AS, (limit, limit))

    def _request(self, command: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        if self._proc is None or self._proc.stdin is None:
            raise ReplDiedError("lean repl is not running")
        payload = json.dumps(command, ensure_ascii=False) + "\n\n"
        try:
            try:
                self._proc.stdin.write(payload.encode("utf-8"))
                self._proc.stdin.flush()
            except OSError:
                raise self._died() from None
            return self._read_reply(time.monotonic() + timeout_s, timeout_s)
        except ReplError:
            self.close()
            raise

    def _read_reply(self, deadline: float, timeout_s: float) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None
        assert self._selector is not None
        fd = self._proc.stdout.fileno()
        while True:
            chunk = self._take_chunk()
            if chunk is not None:
                return _parse_reply(chunk)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self._selector.select(remaining):
                raise ReplTimeoutError(f"lean repl timed out after {timeout_s:g}s")
            try:
                data = os.read(fd, _READ_CHUNK)
            except BlockingIOError:
                continue
            if not data:
                raise self._died()
            self._buffer += data
            if len(self._buffer) > _MAX_REPLY_BYTES:
                raise ReplProtocolError("lean repl reply exceeds 64 MiB")

    def _take_chunk(self) -> bytes | None:
        """Pop one blank-line-terminated reply from the buffer, if a whole one has arrived."""
        self._buffer = self._buffer.lstrip(b"\r\n")
        for sep in (b"\n\n", b"\n\r\n"):
            end = self._buffer.find(sep)
            if end != -1:
                chunk, self._buffer = self._buffer[:end], self._buffer[end + len(sep) :]
                return chunk
        return None

    def _died(self) -> ReplDiedError:
        assert self._proc is not None
        try:
            code = self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        self._stderr.seek(0)
        tail = self._stderr.read()[-2000:].decode("utf-8", "replace").strip()
        last = tail.splitlines()[-1] if tail else "no stderr output"
        return ReplDiedError(f"lean repl exited (code {code}): {last}")


def _parse_reply(chunk: bytes) -> dict[str, Any]:
    text = chunk.decode("utf-8", "replace")
    try:
        reply = json.loads(text)
    except json.JSONDecodeError:
        reply = None
    if not isinstance(reply, dict):
        preview = text.strip().splitlines()[0][:120] if text.strip() else ""
        raise ReplProtocolError(f"lean repl printed non-JSON output: {preview!r}")
    return reply
