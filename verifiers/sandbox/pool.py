"""The parent side: zygotes that fork isolated workers, and one dispatcher thread that
hands jobs to them, reads their results and enforces a hard wall-clock timeout.

Every untrusted program (anything an LLM wrote or a dataset supplied: every job whose source is
not registered in `trusted_programs`) runs in a process forked for it alone. The parent sends
the jobs to that process's own socket, reads one result line per job, and kills the process; so
no program shares a process with another program, and the only verdicts a program can influence
are its own. The jobs of one `run` call that execute the same source (one program on many
inputs: InfinityMATH variants of a model-written template) may run one after another in that
process: whatever a job leaves behind can only reach the same program's later results, which
that program decides anyway. Programs registered as trusted (the bundled library's, written for
this project) run in batches on long-lived workers instead, because the default build runs
~70,000 of them and a fork per job would cost a millisecond or more each (see bench/verifiers.py
for the measured ratio).

Each zygote (one with sympy imported, one without: see FLAVOURS) keeps `workers` freshly
forked, fully isolated workers waiting, so a job never waits for a fork. `Sandbox.run` is
thread-safe: calls from several threads share the pool.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathsynth.errors import MathsynthError
from mathsynth.verifiers.sandbox.codec import UnsafeValueError, decode, encode, to_safe
from mathsynth.verifiers.sandbox.filesystem import ALLOWED_PACKAGES
from mathsynth.verifiers.sandbox.isolation import Layer, scrubbed_environment
from mathsynth.verifiers.sandbox.jobs import STATUSES, SandboxJob, SandboxResult

_STARTUP_TIMEOUT_S = 120.0
_MAX_BATCH = 256
# Jobs of one untrusted program per process: enough to amortise the fork, few enough that
# the calls of other threads do not wait long behind one program's variants.
_MAX_ONCE = 32
_MAX_REPLY = 64 * 1024 * 1024
_PROJECT_ROOT = str(Path(__file__).resolve().parents[2])
DISABLE_ENV = "MATHSYNTH_SANDBOX_DISABLE"


# A program that mentions sympy or mpmath forks from the zygote that has them imported and
# warmed up; any other from one without them, which forks and exits ~40% faster (a program
# that imports sympy in some other way still can, at the cost of the import).
FLAVOURS = ("sympy", "plain")


def flavour_of(job: SandboxJob) -> str:
    """The zygote a job needs: sympy preloaded when its program or checks name it, or when
    its result is rendered as LaTeX (which is sympy's `latex`)."""
    text = job.source + "".join(job.checks)
    return "sympy" if job.latex or "sympy" in text or "mpmath" in text else "plain"


class SandboxError(MathsynthError):
    """The sandbox itself failed (its zygote could not start or died), not a program."""


def disabled_layers() -> list[str]:
    """Layers switched off with MATHSYNTH_SANDBOX_DISABLE (comma list, see zygote.KNOBS)."""
    from mathsynth.verifiers.sandbox.zygote import KNOBS

    raw = [k.strip() for k in os.environ.get(DISABLE_ENV, "").split(",") if k.strip()]
    unknown = sorted(set(raw) - set(KNOBS))
    if unknown:
        raise SandboxError(
            f"{DISABLE_ENV}: unknown layer(s) {', '.join(unknown)}; choose from {', '.join(KNOBS)}"
        )
    return raw


class _Zygote:
    """Handle on one zygote process (see zygote.py); used by the dispatcher thread only.
    Starting it returns at once; `ready()` waits for its report (so two start in parallel)."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.flavour: str = config["flavour"]
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = scrubbed_environment(dict(os.environ))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PROJECT_ROOT, env.get("PYTHONPATH")) if p)
        cmd = [
            sys.executable,
            "-s",
            "-c",
            "from mathsynth.verifiers.sandbox.zygote import main; main()",
            json.dumps(config),
            str(theirs.fileno()),
        ]
        self.proc = subprocess.Popen(
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
        self.sock = ours
        self.layers: list[Layer] = []
        self.mounts: list[tuple[str, str]] = []

    def ready(self) -> _Zygote:
        """Wait for the zygote's report; raises SandboxError when it could not start."""
        self.sock.settimeout(_STARTUP_TIMEOUT_S)
        try:
            message = self.sock.recv(1 << 20)
        except OSError:
            message = b""
        self.sock.settimeout(None)
        hello = json.loads(message) if message else {"error": "sandbox zygote exited at startup"}
        if "error" in hello:
            self.close()
            raise SandboxError(f"sandbox failed to start: {hello['error']}")
        self.layers = [Layer(n, bool(a), str(d), str(m)) for n, a, d, m in hello["layers"]]
        self.mounts = [(str(a), str(b)) for a, b in hello["mounts"]]
        return self

    def request(self, n: int) -> bool:
        try:
            self.sock.send(str(n).encode())
            return True
        except OSError:
            return False

    def receive(self) -> _Worker | None:
        """The next forked worker; None when the zygote is gone."""
        try:
            message, fds, _, _ = socket.recv_fds(self.sock, 64, 2)
        except OSError:
            return None
        if not message or len(fds) != 2:
            for fd in fds:
                os.close(fd)
            return None
        return _Worker(int(message), socket.socket(fileno=fds[0]), fds[1])

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class _Worker:
    """Parent's handle on one worker process: its own socket and its pidfd."""

    def __init__(self, pid: int, sock: socket.socket, pidfd: int) -> None:
        self.pid = pid
        self.sock = sock
        self.pidfd: int | None = pidfd
        self.fresh = True  # has not been sent anything yet
        self.served = 0
        self.buffer = bytearray()

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the worker's process group, then forget it. Safe on a dead worker: the
        pidfd says whether it lives, and while it lives its pid cannot be reused."""
        if self.pidfd is not None:
            if not select.select([self.pidfd], [], [], 0)[0]:
                for send in (
                    lambda: os.killpg(self.pid, signal.SIGKILL),
                    lambda: signal.pidfd_send_signal(self.pidfd, signal.SIGKILL),
                ):
                    with contextlib.suppress(OSError):
                        send()
            os.close(self.pidfd)
            self.pidfd = None
        with contextlib.suppress(OSError):
            self.sock.close()


@dataclass
class _Call:
    """One Sandbox.run call: its result slots and how many are still empty."""

    results: list[SandboxResult | None]
    remaining: int
    done: threading.Event = field(default_factory=threading.Event)
    failure: BaseException | None = None

    def set(self, index: int, result: SandboxResult) -> None:
        if self.results[index] is None:
            self.results[index] = result
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()

    def fail(self, failure: BaseException) -> None:
        if self.failure is None:
            self.failure = failure
        self.done.set()


@dataclass
class _Item:
    """Work for one process: the jobs of one untrusted program, after which the process is
    killed ("once"), or a batch of trusted ones, for a worker of the zygote `flavour`."""

    call: _Call
    once: bool
    codes: list[str]
    jobs: list[list[Any]]  # wire form: [index, code_no, kwargs, capture_locals, checks, latex?]
    ids: list[str]
    flavour: str = "sympy"

    def message(self) -> bytes:
        body: dict[str, Any] = {"codes": self.codes, "jobs": self.jobs}
        if self.once:
            body["once"] = True
        return json.dumps(body, separators=(",", ":")).encode() + b"\n"

    def rest(self) -> _Item | None:
        """The jobs after the first, to rerun elsewhere (batches only)."""
        if len(self.jobs) <= 1:
            return None
        return _Item(self.call, self.once, self.codes, self.jobs[1:], self.ids[1:], self.flavour)


@dataclass
class _Busy:
    worker: _Worker
    item: _Item
    deadline: float


class _Dispatcher:
    """The one thread that talks to the zygotes and the workers (so the parent's share of a
    job is a few system calls, not a thread switch per result)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.workers = sandbox.workers
        started = [_Zygote(sandbox._zygote_config(f)) for f in FLAVOURS]
        try:
            self.zygotes = {z.flavour: z for z in (z.ready() for z in started)}
        except SandboxError:
            for z in started:
                z.close()
            raise
        self._lock = threading.Lock()
        self._incoming: deque[_Item] = deque()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        self._queue: deque[_Item] = deque()
        self._ready: dict[str, deque[_Worker]] = {f: deque() for f in FLAVOURS}
        self._requested = dict.fromkeys(FLAVOURS, 0)
        self._idle: deque[_Worker] = deque()  # batch workers (trusted programs), "sympy"
        self._busy: dict[int, _Busy] = {}
        self._stopping = False
        self.thread = threading.Thread(target=self._loop, name="sandbox-dispatch", daemon=True)
        self.thread.start()

    # called from other threads -----------------------------------------------------------

    def submit(self, items: list[_Item]) -> None:
        with self._lock:
            if self._stopping:
                raise SandboxError("sandbox is closed")
            self._incoming.extend(items)
        self._wake()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        self._wake()
        self.thread.join()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    # the dispatcher thread ---------------------------------------------------------------

    def _loop(self) -> None:
        try:
            while True:
                with self._lock:
                    self._queue.extend(self._incoming)
                    self._incoming.clear()
                    stopping = self._stopping
                if stopping:
                    closed = SandboxError("sandbox closed while jobs were running")
                    for item in [*self._queue, *(b.item for b in self._busy.values())]:
                        item.call.fail(closed)
                    return
                self._assign()
                self._top_up()
                self._wait()
                self._expire()
        except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
            failure = exc if isinstance(exc, SandboxError) else SandboxError(f"sandbox: {exc!r}")
            with self._lock:
                self._stopping = True
                pending = [*self._queue, *self._incoming, *(b.item for b in self._busy.values())]
            for item in pending:
                item.call.fail(failure)
        finally:
            self._shutdown()

    def _assign(self) -> None:
        while self._queue and len(self._busy) < self.workers:
            item = self._queue[0]
            pool = self._ready[item.flavour] if item.once or not self._idle else self._idle
            if not pool:
                return
            worker = pool.popleft()
            self._queue.popleft()
            worker.fresh = False
            if not worker.send(item.message()):
                worker.kill()  # died while waiting: the item goes to another worker
                self._queue.appendleft(item)
                continue
            deadline = time.monotonic() + self.sandbox.timeout_s
            self._busy[worker.sock.fileno()] = _Busy(worker, item, deadline)

    def _top_up(self) -> None:
        for flavour, zygote in self.zygotes.items():
            want = self.workers - len(self._ready[flavour]) - self._requested[flavour]
            if want > 0 and zygote.request(want):
                self._requested[flavour] += want

    def _wait(self) -> None:
        now = time.monotonic()
        deadlines = [b.deadline for b in self._busy.values()]
        timeout = max(0.0, min(deadlines) - now) if deadlines else None
        by_sock = {z.sock: z for z in self.zygotes.values()}
        watched = [self._wake_r, *by_sock, *self._busy]
        readable, _, _ = select.select(watched, [], [], timeout)
        for fd in readable:
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            elif isinstance(fd, socket.socket):
                self._from_zygote(by_sock[fd].flavour)
            elif fd in self._busy:
                self._from_worker(self._busy[fd])

    def _from_zygote(self, flavour: str) -> None:
        worker = self.zygotes[flavour].receive()
        if worker is not None:
            self._requested[flavour] -= 1
            self._ready[flavour].append(worker)
            return
        # The zygote died (it never runs a program; this is the machine, e.g. the OOM killer).
        # Start a new one; its workers' jobs in flight die with it and are reported killed.
        self.zygotes[flavour].close()
        for stale in self._ready[flavour]:
            stale.kill()
        self._ready[flavour].clear()
        self._requested[flavour] = 0
        self.zygotes[flavour] = _Zygote(self.sandbox._zygote_config(flavour)).ready()

    @property
    def layers(self) -> list[Layer]:
        """The layers of the "sympy" zygote; one that is not in force in the other zygote
        counts as not in force."""
        other = {la.name: la for la in self.zygotes["plain"].layers}
        merged = []
        for layer in self.zygotes["sympy"].layers:
            twin = other.get(layer.name)
            merged.append(layer if twin is None or twin.active or not layer.active else twin)
        return merged

    def _from_worker(self, busy: _Busy) -> None:
        worker = busy.worker
        try:
            chunk = worker.sock.recv(1 << 20)
        except OSError:
            chunk = b""
        if not chunk:
            self._finish(busy, "killed", "worker process died")
            return
        worker.buffer += chunk
        while True:
            end = worker.buffer.find(b"\n")
            if end < 0:
                if len(worker.buffer) > _MAX_REPLY:
                    self._finish(busy, "error", f"result larger than {_MAX_REPLY >> 20} MiB")
                return
            line = bytes(worker.buffer[: end + 1])
            del worker.buffer[: end + 1]
            expected = busy.item.jobs[0][0]
            reply = _parse_reply(line, expected)
            if reply is None:
                self._finish(busy, "killed", "worker sent a malformed reply")
                return
            busy.item.call.set(expected, _to_result(busy.item.ids[0], reply))
            worker.served += 1
            rest = busy.item.rest()
            if rest is None or reply.get("x"):
                self._release(busy, retire=busy.item.once or bool(reply.get("x")))
                if rest is not None:
                    self._queue.appendleft(rest)
                return
            busy.item = rest
            busy.deadline = time.monotonic() + self.sandbox.timeout_s

    def _finish(self, busy: _Busy, status: str, error: str) -> None:
        """The current job ends with `status`; the worker is killed; the rest is rerun."""
        item = busy.item
        item.call.set(item.jobs[0][0], SandboxResult(item.ids[0], status, error=error))  # type: ignore[arg-type]
        self._release(busy, retire=True)
        rest = item.rest()
        if rest is not None:
            self._queue.appendleft(rest)

    def _release(self, busy: _Busy, *, retire: bool) -> None:
        worker = busy.worker
        del self._busy[worker.sock.fileno()]
        if retire or worker.served >= self.sandbox.recycle_after or worker.buffer:
            worker.kill()
        else:
            self._idle.append(worker)
            while len(self._idle) > self.workers:
                self._idle.popleft().kill()

    def _expire(self) -> None:
        now = time.monotonic()
        for busy in [b for b in self._busy.values() if b.deadline <= now]:
            self._finish(busy, "timeout", f"timed out after {self.sandbox.timeout_s:g}s")

    def _shutdown(self) -> None:
        for busy in list(self._busy.values()):
            busy.worker.kill()
        self._busy.clear()
        for worker in (*self._idle, *(w for ready in self._ready.values() for w in ready)):
            worker.kill()
        self._idle.clear()
        for flavour, zygote in self.zygotes.items():
            self._ready[flavour].clear()
            zygote.close()
        os.close(self._wake_r)
        os.close(self._wake_w)


class Sandbox:
    """A pool of isolated Python workers forked from a preloaded zygote.

        with Sandbox(workers=None, timeout_s=5.0, memory_mb=1024, recycle_after=5000) as sb:
            results = sb.run([SandboxJob(id="a", code="def solution(x):\\n    return x + 1",
                                         kwargs={"x": 3})])

    `workers`: processes running at once (default: one per CPU). `recycle_after`: jobs a
    batch worker (trusted programs only) serves before it is replaced. `trusted_programs`:
    exact program sources written for this project (the bundled seed library) that may share
    a worker; every other job gets a process of its own. `packages`: the importable packages
    besides the standard library (their dependencies come along).

    Failure modes: starting raises SandboxError (one line) when the zygote cannot start;
    `run` raises SandboxError if the zygote dies for good. A misbehaving program only ever
    affects its own SandboxResult. A layer that cannot be set up is reported by `layers`,
    `isolation` and a warning line on stderr when the sandbox starts.
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
        tmpfs_mb: int = 64,
        drop_uid: bool = True,
        trusted_programs: Iterable[str] = (),
        packages: Sequence[str] = ALLOWED_PACKAGES,
        warn_degraded: bool = True,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        self.workers = workers or os.cpu_count() or 1
        self.timeout_s = timeout_s
        self.recycle_after = recycle_after
        self.trusted_programs: set[str] = set(trusted_programs)
        self._warn = warn_degraded
        self._config = {
            "limits": {"memory_mb": memory_mb, "file_size_mb": file_size_mb, "open_files": 64},
            "output_limit": output_limit,
            "timeout_s": timeout_s,
            "tmpfs_mb": tmpfs_mb,
            "drop_uid": drop_uid,
            "packages": list(packages),
            "disable": [],
        }
        self._dispatcher: _Dispatcher | None = None
        self._start_lock = threading.Lock()

    def _zygote_config(self, flavour: str) -> dict[str, Any]:
        return {**self._config, "flavour": flavour}

    # lifecycle -----------------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        with self._start_lock:
            if self._dispatcher is not None:
                return
            self._config["disable"] = disabled_layers()
            self._dispatcher = _Dispatcher(self)
        level = self.isolation
        if level != "full" and self._warn:
            missing = [f"{la.name} ({la.detail})" for la in self.layers if not la.active]
            text = f"warning: sandbox isolation {level}."
            if missing:
                text += " Not in force: " + "; ".join(missing)
            print(text, file=sys.stderr, flush=True)

    def close(self) -> None:
        with self._start_lock:
            if self._dispatcher is None:
                return
            self._dispatcher.stop()
            self._dispatcher = None

    @property
    def layers(self) -> list[Layer]:
        """The isolation layers as the zygotes reported them at startup."""
        self.start()
        assert self._dispatcher is not None
        return self._dispatcher.layers

    @property
    def mounts(self) -> list[tuple[str, str]]:
        """(path, what it is) for everything a program's filesystem shows."""
        self.start()
        assert self._dispatcher is not None
        return list(self._dispatcher.zygotes["sympy"].mounts)

    @property
    def isolation(self) -> str:
        """One line for provenance: "full" when every layer is in force, else what is
        missing and the filesystem mechanism, e.g. "reduced: filesystem=landlock, -uid"."""
        layers = self.layers
        fs = next((la for la in layers if la.name == "filesystem"), None)
        missing = [f"-{la.name}" for la in layers if not la.active]
        if not missing and fs is not None and fs.mode == "pivot_root":
            return "full"
        parts = [f"filesystem={fs.mode}"] if fs is not None and fs.active else []
        return "reduced: " + ", ".join(parts + missing)

    # running -------------------------------------------------------------------------------

    def trust_assembled(self, code: str, parts: Iterable[str]) -> bool:
        """Trust `code`, a program the pipeline assembled itself from `parts` (a MuggleMath /
        MathScale composition: two programs and glue our code wrote), when every part is
        trusted; returns whether `code` is trusted now. A part that came from a model or a
        dataset keeps the whole untrusted."""
        if all(part in self.trusted_programs for part in parts):
            self.trusted_programs.add(code)  # one set.add: atomic under the GIL
        return code in self.trusted_programs

    def run(self, jobs: Iterable[SandboxJob]) -> list[SandboxResult]:
        """Run the jobs; results come back in the same order. Thread-safe."""
        jobs = list(jobs)
        if not jobs:
            return []
        self.start()
        call = _Call(results=[None] * len(jobs), remaining=len(jobs))
        trusted: list[tuple[int, SandboxJob, Any]] = []
        # one program's jobs, in wire form, and their ids, by (source, zygote flavour)
        untrusted: dict[tuple[str, str], tuple[list[list[Any]], list[str]]] = {}
        items: list[_Item] = []
        for index, job in enumerate(jobs):
            try:
                kwargs = encode(to_safe(dict(job.kwargs), strict=True))
            except UnsafeValueError as exc:
                call.set(
                    index, SandboxResult(job.id, "error", error=f"kwargs not JSON-safe: {exc}")
                )
                continue
            if job.code in self.trusted_programs:
                trusted.append((index, job, kwargs))
            else:
                wire = [index, 0, kwargs, job.capture_locals, list(job.checks)]
                if job.latex:
                    wire.append(True)
                same = untrusted.setdefault((job.source, flavour_of(job)), ([], []))
                same[0].append(wire)
                same[1].append(job.id)
        for (source, flavour), (wires_of, ids_of) in untrusted.items():
            for start in range(0, len(wires_of), _MAX_ONCE):
                stop = start + _MAX_ONCE
                items.append(
                    _Item(call, True, [source], wires_of[start:stop], ids_of[start:stop], flavour)
                )
        size = max(1, min(_MAX_BATCH, math.ceil(len(trusted) / (self.workers * 4))))
        for start in range(0, len(trusted), size):
            chunk = trusted[start : start + size]
            codes: dict[str, int] = {}
            wires = [
                [
                    index,
                    codes.setdefault(job.source, len(codes)),
                    kwargs,
                    job.capture_locals,
                    list(job.checks),
                    *([True] if job.latex else []),
                ]
                for index, job, kwargs in chunk
            ]
            items.append(_Item(call, False, list(codes), wires, [job.id for _, job, _ in chunk]))
        if items:
            assert self._dispatcher is not None
            self._dispatcher.submit(items)
            call.done.wait()
        if call.failure is not None:
            raise call.failure
        return [r for r in call.results if r is not None]


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
