"""The parent side: a pool of pre-forked, isolated workers with a hard wall-clock timeout.

One thread per worker slot pulls batches from a shared queue, so `Sandbox.run` is safe to call
from several threads at once. A batch goes to the worker in one message; results stream back
one line per job, and the deadline of each job starts when the previous result arrived. On a
timeout the parent SIGKILLs the worker's process group and the rest of the batch is rerun on
a freshly forked worker.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathsynth.errors import MathsynthError
from mathsynth.verifiers.sandbox.codec import UnsafeValueError, decode, encode, to_safe
from mathsynth.verifiers.sandbox.isolation import Layer, scrubbed_environment
from mathsynth.verifiers.sandbox.jobs import STATUSES, SandboxJob, SandboxResult

_STARTUP_TIMEOUT_S = 120.0
_MAX_BATCH = 256
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])


class SandboxError(MathsynthError):
    """The sandbox itself failed (its zygote could not start or died), not a program."""


class _Zygote:
    """Handle on the zygote process (see zygote.py). Thread-safe `spawn`."""

    def __init__(self, config: dict[str, Any]) -> None:
        self._config = config
        self._lock = threading.Lock()
        self.layers: list[Layer] = []
        self._start()

    def _start(self) -> None:
        ours, theirs = socket.socketpair()
        env = scrubbed_environment(dict(os.environ))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH")) if p)
        cmd = [
            sys.executable,
            "-s",
            "-c",
            "from mathsynth.verifiers.sandbox.zygote import main; main()",
            json.dumps(self._config),
            str(theirs.fileno()),
        ]
        self._proc = subprocess.Popen(
            cmd,
            pass_fds=[theirs.fileno()],
            env=env,
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        theirs.close()
        self._sock = ours
        self._reader = ours.makefile("rb")
        ours.settimeout(_STARTUP_TIMEOUT_S)
        try:
            line = self._reader.readline()
        except OSError:
            line = b""
        ours.settimeout(None)
        hello = json.loads(line) if line else {"error": "sandbox zygote exited during startup"}
        if "error" in hello:
            self.close()
            raise SandboxError(f"sandbox failed to start: {hello['error']}")
        self.layers = [
            Layer(name, bool(active), str(detail)) for name, active, detail in hello["layers"]
        ]

    def spawn(self, slot: int) -> _WorkerProcess:
        """Fork a worker. Restarts the zygote once if it died; raises SandboxError after."""
        with self._lock:
            for attempt in range(2):
                try:
                    self._sock.sendall(f"{slot}\n".encode())
                    msg, fds, _, _ = socket.recv_fds(self._sock, 64, 2)
                    if not msg or not fds:
                        raise OSError("zygote closed the control socket")
                    pidfd = fds[1] if len(fds) > 1 else None
                    return _WorkerProcess(int(msg), socket.socket(fileno=fds[0]), pidfd)
                except (OSError, ValueError):
                    if attempt:
                        raise SandboxError(
                            "sandbox zygote died and could not be restarted"
                        ) from None
                    self.close()
                    self._start()
        raise AssertionError("unreachable")

    def close(self) -> None:
        try:
            self._reader.close()
            self._sock.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class _WorkerProcess:
    """Parent's handle on one worker: its socket, pid/pidfd, and a line reader with deadline."""

    def __init__(self, pid: int, sock: socket.socket, pidfd: int | None) -> None:
        self.pid = pid
        self.sock = sock
        self.pidfd = pidfd
        self.served = 0
        self._buffer = bytearray()

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def read_line(self, deadline: float) -> bytes | None:
        """The next line; b"" when the worker is gone; None when the deadline passed."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self.sock], [], [], remaining)
            if not ready:
                return None
            try:
                chunk = self.sock.recv(1 << 20)
            except OSError:
                return b""
            if not chunk:
                return b""
            self._buffer += chunk

    def kill(self) -> None:
        """SIGKILL the worker's whole process group, then forget it."""
        if self.pidfd is not None:
            alive = not select.select([self.pidfd], [], [], 0)[0]
            if alive:  # the pid cannot have been reused while the process lives
                for send in (
                    lambda: os.killpg(self.pid, signal.SIGKILL),
                    lambda: signal.pidfd_send_signal(self.pidfd, signal.SIGKILL),
                ):
                    with contextlib.suppress(OSError):
                        send()
            os.close(self.pidfd)
            self.pidfd = None
        else:
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
        self.sock.close()

    def forget(self) -> None:
        """The worker exited on its own."""
        if self.pidfd is not None:
            os.close(self.pidfd)
            self.pidfd = None
        self.sock.close()


@dataclass
class _Call:
    """One Sandbox.run call: its results slots and a countdown of unfinished chunks."""

    results: list[SandboxResult | None]
    chunks: int
    done: threading.Event = field(default_factory=threading.Event)
    failure: BaseException | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def chunk_finished(self, failure: BaseException | None = None) -> None:
        with self.lock:
            if failure is not None and self.failure is None:
                self.failure = failure
            self.chunks -= 1
            if self.chunks == 0:
                self.done.set()


class Sandbox:
    """A pool of pre-forked isolated Python workers.

        with Sandbox(workers=None, timeout_s=5.0, memory_mb=1024, recycle_after=5000) as sb:
            results = sb.run([SandboxJob(id="a", code="def solution(x):\\n    return x + 1",
                                         kwargs={"x": 3})])

    Failure modes: starting raises SandboxError (one line) when the zygote cannot start;
    `run` raises SandboxError if the zygote dies for good. A misbehaving program only ever
    affects its own SandboxResult.
    """

    def __init__(
        self,
        workers: int | None = None,
        timeout_s: float = 5.0,
        memory_mb: int = 1024,
        recycle_after: int = 5000,
        *,
        output_limit: int = 64 * 1024,
        file_size_mb: int = 16,
        tmpfs_mb: int = 256,
        drop_uid: bool = True,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.workers = workers or os.cpu_count() or 1
        self.timeout_s = timeout_s
        self.recycle_after = recycle_after
        self._config = {
            "limits": {"memory_mb": memory_mb, "file_size_mb": file_size_mb, "open_files": 64},
            "output_limit": output_limit,
            "timeout_s": timeout_s,
            "tmpfs_mb": tmpfs_mb,
            "drop_uid": drop_uid,
        }
        self._zygote: _Zygote | None = None
        self._queue: queue.Queue[tuple[_Call, int, list[SandboxJob]] | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        self.respawns = 0

    # lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        with self._start_lock:
            if self._zygote is not None:
                return
            self._zygote = _Zygote(self._config)
            for slot in range(self.workers):
                thread = threading.Thread(
                    target=self._slot_loop, args=(slot,), name=f"sandbox-{slot}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def close(self) -> None:
        with self._start_lock:
            if self._zygote is None:
                return
            for _ in self._threads:
                self._queue.put(None)
            for thread in self._threads:
                thread.join()
            self._threads.clear()
            self._zygote.close()
            self._zygote = None

    @property
    def layers(self) -> list[Layer]:
        """The isolation layers as the zygote reported them at startup."""
        self.start()
        assert self._zygote is not None
        return list(self._zygote.layers)

    # running -------------------------------------------------------------------------------

    def run(self, jobs: Iterable[SandboxJob]) -> list[SandboxResult]:
        """Run the jobs; results come back in the same order. Thread-safe."""
        jobs = list(jobs)
        if not jobs:
            return []
        self.start()
        size = max(1, min(_MAX_BATCH, math.ceil(len(jobs) / (self.workers * 4))))
        starts = range(0, len(jobs), size)
        call = _Call(results=[None] * len(jobs), chunks=len(starts))
        for start in starts:
            self._queue.put((call, start, jobs[start : start + size]))
        call.done.wait()
        if call.failure is not None:
            raise call.failure
        return [r for r in call.results if r is not None]

    def _slot_loop(self, slot: int) -> None:
        worker: _WorkerProcess | None = None
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                call, start, jobs = item
                try:
                    worker = self._run_chunk(slot, worker, call, start, jobs)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller of run()
                    if worker is not None:
                        worker.kill()
                        worker = None
                    call.chunk_finished(exc)
                else:
                    call.chunk_finished()
        finally:
            if worker is not None:
                worker.kill()

    def _spawn(self, slot: int) -> _WorkerProcess:
        assert self._zygote is not None
        self.respawns += 1
        return self._zygote.spawn(slot)

    def _run_chunk(
        self,
        slot: int,
        worker: _WorkerProcess | None,
        call: _Call,
        start: int,
        jobs: Sequence[SandboxJob],
    ) -> _WorkerProcess | None:
        pending: list[tuple[int, list[Any]]] = []
        codes: dict[str, int] = {}
        for pos, job in enumerate(jobs):
            try:
                kwargs = encode(to_safe(dict(job.kwargs), strict=True))
            except UnsafeValueError as exc:
                call.results[start + pos] = SandboxResult(
                    job.id, "error", error=f"kwargs not JSON-safe: {exc}"
                )
                continue
            code_no = codes.setdefault(job.code, len(codes))
            wire = [pos, code_no, kwargs, job.capture_locals, list(job.checks)]
            if job.latex:
                wire.append(True)
            pending.append((pos, wire))
        code_list = list(codes)

        while pending:
            if worker is None:
                worker = self._spawn(slot)
            message = {"codes": code_list, "jobs": [wire for _, wire in pending]}
            sent = worker.send(json.dumps(message, separators=(",", ":")).encode() + b"\n")
            done = 0
            while done < len(pending) and sent:
                pos = pending[done][0]
                job = jobs[pos]
                line = worker.read_line(time.monotonic() + self.timeout_s)
                if line is None:
                    worker.kill()
                    worker = None
                    call.results[start + pos] = SandboxResult(
                        job.id, "timeout", error=f"timed out after {self.timeout_s:g}s"
                    )
                    done += 1
                    break
                reply = _parse_reply(line, pos) if line else None
                if reply is None:
                    worker.kill()
                    worker = None
                    call.results[start + pos] = SandboxResult(
                        job.id,
                        "killed",
                        error="worker process died"
                        if not line
                        else "worker sent a malformed reply",
                    )
                    done += 1
                    break
                call.results[start + pos] = _to_result(job.id, reply)
                done += 1
                worker.served += 1
                if reply.get("x"):
                    worker.forget()
                    worker = None
                    break
            if not sent:
                worker.kill() if worker is not None else None
                worker = None
                pos = pending[0][0]
                call.results[start + pos] = SandboxResult(
                    jobs[pos].id, "killed", error="worker process died"
                )
                done = 1
            pending = pending[done:]
        if worker is not None and worker.served >= self.recycle_after:
            worker.kill()
            worker = None
        return worker


def _parse_reply(line: bytes, expected: int) -> dict[str, Any] | None:
    """A worker's reply, or None when it is not the well-formed reply for job `expected`."""
    try:
        reply = json.loads(line)
    except ValueError:
        return None
    if not isinstance(reply, dict) or reply.get("i") != expected or reply.get("s") not in STATUSES:
        return None
    return reply


def _to_result(job_id: str, reply: dict[str, Any]) -> SandboxResult:
    try:
        result = decode(reply.get("r"))
        local_values = decode(reply["l"]) if reply.get("l") is not None else None
    except UnsafeValueError as exc:
        return SandboxResult(job_id, "error", error=f"unreadable result: {exc}")
    failed = reply.get("f") or []
    error = reply.get("e")
    stdout = reply.get("o")
    return SandboxResult(
        id=job_id,
        status=reply["s"],
        result=result,
        stdout=stdout if isinstance(stdout, str) else "",
        error=error if isinstance(error, str) else None,
        locals=local_values if isinstance(local_values, dict) else None,
        failed_checks=[c for c in failed if isinstance(c, str)],
    )
