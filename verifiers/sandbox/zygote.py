"""The zygote: imports the preloaded modules once, isolates itself, and forks ready workers
on demand (a fork costs about a millisecond; a fresh Python importing sympy, a second).

Started by the parent with `python -s -c ... CONFIG_JSON CONTROL_FD`, once per flavour
("sympy": sympy imported and warmed up; "plain": without it, see `_preload`). The control socket is
a SOCK_SEQPACKET pair (one message per datagram, so a worker's descriptors can never be
mistaken for another's):
  zygote -> parent, once:  {"layers": [[name, active, detail, mode], ...], "mounts": [...]}
                           or {"error": "..."}
  parent -> zygote:        b"<n>"   (fork n more workers)
  zygote -> parent:        b"<pid>" with SCM_RIGHTS [worker socket, pidfd], once per worker
The zygote never sees a job: the parent sends each job straight to the worker it picked, so
no worker's memory holds anything of another job. A worker is forked and fully isolated
before it reads its job. The zygote exits when the parent closes the control socket.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import math
import os
import random
import select
import shutil
import signal
import socket
import sys
import tempfile
from typing import Any

from mathsynth.verifiers.sandbox import filesystem, isolation, worker
from mathsynth.verifiers.sandbox.isolation import Layer, Limits, Seccomp

PRELOADED = (
    "math",
    "cmath",
    "fractions",
    "decimal",
    "statistics",
    "itertools",
    "functools",
    "collections",
    "random",
    "re",
    "string",
    "numbers",
    "heapq",
    "bisect",
    "sympy",
)
# Layers that MATHSYNTH_SANDBOX_DISABLE may switch off, to see (and test) how the sandbox
# degrades on a machine without them: "root" = behave as an unprivileged caller.
KNOBS = ("root", "userns", "mountns", "landlock", "network", "seccomp")
_UIDS_PER_ZYGOTE = 1000


def _preload(flavour: str) -> None:
    """Import what workers should find ready. The "plain" flavour leaves sympy out: its
    workers have a third of the memory to copy on fork and at exit, so a program that does
    not use sympy runs ~40% faster there (it can still import sympy, at import cost)."""
    for name in PRELOADED:
        if name != "sympy":
            __import__(name)
    if flavour == "plain":
        return
    import sympy

    # Build the lazily-made parts once, before forking, so no worker pays for them: printing,
    # caches, assumptions, and the solvers' code paths for the usual shapes of equation.
    x, y = sympy.symbols("x y")
    str(sympy.simplify((x**2 - 1) / (x - 1)) + sympy.Rational(1, 3))
    for k in range(1, 4):
        sympy.Rational(sum(sympy.solve(x**2 - (k + 2) * x + 2 * k, x)), k + 3)
        sympy.solve(2 * x + k - 7, x)
        sympy.solve([x + y - k, x - y - 1], [x, y])
    sympy.sqrt(8) * sympy.Rational(3, 4) + sympy.factorial(5)
    str(sympy.factor(x**2 - 4) + sympy.expand((x + 1) ** 3))


class Zygote:
    def __init__(self, config: dict[str, Any], control: socket.socket) -> None:
        self.control = control
        self.limits = Limits(**config["limits"])
        self.output_limit: int = config["output_limit"]
        self.timeout_s: float = config["timeout_s"]
        self.tmpfs_mb: int = config["tmpfs_mb"]
        self.drop_uid: bool = config["drop_uid"]
        self.packages: list[str] = config["packages"]
        self.flavour: str = config["flavour"]
        self.disabled = set(config["disable"])
        self.layers: list[Layer] = []
        self.mounts: list[tuple[str, str]] = []
        self.seccomp: Seccomp | None = None
        self.landlock: filesystem.Landlock | None = None
        self.pivoted = False
        self.userns = False
        self.uids = False
        self.base_dir = ""
        self.forked = 0
        self.live: dict[int, str] = {}  # pidfd -> private dir to remove once the worker died
        self.pid = os.getpid()
        # a uid range per zygote so workers of two pools cannot signal each other either
        self.uid_base = 1_000_000 + (os.getpid() % 100_000) * _UIDS_PER_ZYGOTE

    # -- isolation, once --------------------------------------------------------------------

    def _off(self, knob: str) -> bool:
        return knob in self.disabled

    def isolate(self, imported: set[str]) -> None:
        """Enter the namespaces and build the filesystem; record every layer's state."""
        if self._off("seccomp"):
            seccomp_layer = Layer("seccomp", False, "disabled by MATHSYNTH_SANDBOX_DISABLE")
        else:
            self.seccomp = Seccomp()
            seccomp_layer = Layer(
                "seccomp",
                self.seccomp.available,
                "denies sockets, fork/clone/exec, ptrace, signals to other processes, "
                "namespace, mount and file-handle syscalls"
                if self.seccomp.available
                else str(self.seccomp.error),
                "filter" if self.seccomp.available else "",
            )
        entries = filesystem.allowed_entries(self.packages, imported)
        mounts, moves = filesystem.plan_mounts(entries)

        root = os.geteuid() == 0 and not self._off("root")
        ns_error = None
        if not root:
            if self._off("userns"):
                ns_error = "no user namespace (disabled by MATHSYNTH_SANDBOX_DISABLE)"
            else:
                ns_error = isolation.enter_user_namespace()
                self.userns = ns_error is None
        can_ns = root or self.userns

        if self._off("network"):
            self.layers.append(Layer("network", False, "disabled by MATHSYNTH_SANDBOX_DISABLE"))
        elif can_ns:
            self.layers.append(isolation.enter_network_namespace())
        else:
            self.layers.append(Layer("network", False, f"needs root or {ns_error}"))

        self.layers.append(self._filesystem(can_ns, ns_error, mounts, moves, entries))

        needed = [p for m in mounts if m.kind in ("dir", "file") for p in [m.source]]
        closed = sorted({a for p in needed if (a := isolation.closed_ancestor(p))})
        if not (root and self.drop_uid):
            why = (
                "user namespace maps only the caller's uid; workers run without capabilities"
                if self.userns
                else "not dropped (drop_uid=False)"
                if root
                else "not root: workers keep the caller's uid"
            )
            self.layers.append(Layer("uid", False, why))
        elif closed and not self.pivoted:
            self.layers.append(
                Layer(
                    "uid",
                    False,
                    f"kept root without capabilities: {', '.join(closed)} is closed to other "
                    "users and there is no private filesystem to expose what Python needs",
                )
            )
        else:
            self.uids = True
            self.layers.append(
                Layer(
                    "uid",
                    True,
                    f"each worker runs as its own uid from {self.uid_base}",
                    "uid",
                )
            )
        self.layers.append(seccomp_layer)
        lim = self.limits
        self.layers.append(
            Layer(
                "rlimits",
                True,
                f"address space {lim.memory_mb} MiB, file size {lim.file_size_mb} MiB, "
                f"{lim.open_files} open files, no core dumps, CPU time"
                + (", no new processes (own uid)" if self.uids else ""),
                "rlimit",
            )
        )
        self.layers.append(
            Layer("environment", True, "allow-list environment, HOME unset", "scrubbed")
        )
        self.layers.append(
            Layer(
                "workdir",
                True,
                f"a private, empty /tmp ({self.tmpfs_mb} MiB tmpfs) per process as its cwd"
                if self.pivoted
                else f"a private empty directory per process under {self.base_dir}",
                "tmpfs" if self.pivoted else "dir",
            )
        )
        self.layers.append(
            Layer(
                "process",
                True,
                "one fresh process per program, its result read by the parent from that "
                "process's own socket; only programs registered as trusted (the bundled "
                "library's) share a process",
                "fork-per-job",
            )
        )
        # nothing of the host's paths for programs to read in the environment
        os.environ.pop("PYTHONPATH", None)

    def _filesystem(
        self,
        can_ns: bool,
        ns_error: str | None,
        mounts: list[filesystem.Mount],
        moves: list[tuple[str, str]],
        entries: dict[str, list[str]],
    ) -> Layer:
        reasons = []
        if self._off("mountns"):
            reasons.append("mount namespace disabled by MATHSYNTH_SANDBOX_DISABLE")
        elif not can_ns:
            reasons.append(f"no mount namespace: needs root or {ns_error}")
        elif (error := isolation.enter_mount_namespace()) is not None:
            reasons.append(error)
        else:
            apply_relocation = filesystem.relocation(moves)
            try:
                problems = filesystem.build_root(mounts)
            except OSError as exc:
                reasons.append(f"cannot build the private root: {exc}")
                # back to the host tree (this namespace is private; the host never changed)
                isolation.libc.umount2(b"/tmp", filesystem.MNT_DETACH)
            else:
                apply_relocation()
                self.pivoted = True
                self.mounts = [(m.inside, m.describe()) for m in mounts]
                detail = (
                    f"pivot_root into a minimal read-only tree ({len(mounts)} entries): "
                    "interpreter, stdlib, " + ", ".join(self.packages) + ", loader libraries"
                )
                if problems:
                    detail += f"; problems: {'; '.join(problems)}"
                return Layer("filesystem", True, detail, "pivot_root")
        self.base_dir = tempfile.mkdtemp(prefix="mathsynth-sandbox-")
        os.chmod(self.base_dir, 0o711)
        readable = [m.source for m in mounts if m.kind in ("dir", "file")]
        readable += [m.inside for m in mounts if m.kind == "link"]  # e.g. /lib -> usr/lib
        if self._off("landlock"):
            reasons.append("landlock disabled by MATHSYNTH_SANDBOX_DISABLE")
        elif not filesystem.landlock_abi():
            reasons.append("no landlock in this kernel")
        else:
            devices = [m.source for m in mounts if m.kind == "dev"]
            self.landlock = filesystem.Landlock(sorted(set(readable)), devices)
            links = {m.inside: m.source for m in mounts if m.kind == "link"}
            self.mounts = [
                (
                    p,
                    f"symlink to {links[p]}, readable (landlock)"
                    if p in links
                    else "readable (landlock)",
                )
                for p in sorted(set(readable))
            ]
            self.mounts += [(p, "read-write device (landlock)") for p in devices]
            self.mounts.append((f"{self.base_dir}/<job>", "the job's own read-write directory"))
            return Layer(
                "filesystem",
                True,
                f"landlock ABI {self.landlock.abi}: reads only the interpreter, stdlib, "
                f"{', '.join(self.packages)} and loader libraries at their host paths, writes "
                f"only its own directory (fallback: {'; '.join(reasons)})",
                "landlock",
            )
        self.mounts = [("/", "the host filesystem, as the worker's uid may see it")]
        return Layer("filesystem", False, "; ".join(reasons) + ": programs see host files")

    # -- forking workers --------------------------------------------------------------------

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped automatically
        # No worker reseeds `random` (see _fork): every program starts from the same state,
        # so running a program again reproduces its result.
        random.seed(0)
        gc.collect()
        gc.freeze()  # keep preloaded objects out of the workers' collections (copy-on-write)
        try:
            while True:
                ready, _, _ = select.select([self.control, *self.live], [], [])
                for fd in ready:
                    if fd in self.live:
                        self._forget(fd)
                if self.control not in ready:
                    continue
                message = self.control.recv(64)
                if not message:
                    return
                for _ in range(int(message)):
                    self._fork_worker()
        finally:
            for fd in list(self.live):
                self._forget(fd)
            if self.base_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def _forget(self, pidfd: int) -> None:
        shutil.rmtree(self.live.pop(pidfd), ignore_errors=True)
        os.close(pidfd)

    def _fork_worker(self) -> None:
        number = self.forked
        self.forked += 1
        uid = self.uid_base + number % _UIDS_PER_ZYGOTE if self.uids else -1
        if self.pivoted:
            workdir = "/tmp"  # the worker mounts its own tmpfs there
        else:
            workdir = os.path.join(self.base_dir, f"j{number}")
            os.mkdir(workdir, 0o700)
            if uid >= 0:
                os.chown(workdir, uid, uid)
        parent_end, child_end = socket.socketpair()
        pid = _fork()
        if pid < 0:
            raise isolation.os_error("fork")
        if pid == 0:  # the worker
            code = 1
            try:
                self._become_worker(child_end, uid, workdir)
                code = 0
            finally:
                os._exit(code)
        child_end.close()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:  # it died already
            parent_end.close()
            return
        try:
            socket.send_fds(self.control, [str(pid).encode()], [parent_end.fileno(), pidfd])
        finally:
            parent_end.close()
        if self.pivoted:
            os.close(pidfd)
        else:
            self.live[pidfd] = workdir

    def _become_worker(self, sock: socket.socket, uid: int, workdir: str) -> None:
        # Nothing of the zygote's may stay reachable: the control socket (it could hand the
        # parent forged workers) and the descriptors of other workers.
        keep = {0, 1, 2, sock.fileno()}
        if self.landlock is not None:
            keep |= self.landlock.fds()
        _close_all_but(keep)
        os.setsid()
        isolation.set_parent_death_signal()
        if os.getppid() != self.pid:
            return  # the zygote is already gone
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        if self.pivoted and not filesystem.private_tmp(self.tmpfs_mb, max(uid, 0)):
            raise OSError("cannot mount the private /tmp")
        os.chdir(workdir)
        os.environ["TMPDIR"] = workdir  # tempfile.* then stays inside the private dir
        tempfile.tempdir = workdir  # (the zygote may have cached its own choice already)
        isolation.apply_rlimits(self.limits, math.ceil(self.timeout_s) + 1)
        if uid >= 0:
            isolation.drop_privileges(uid)
        elif os.geteuid() == 0:
            isolation.drop_capabilities()
        isolation.limit_processes()
        if self.landlock is not None:
            error = self.landlock.restrict(workdir)
            if error is not None:
                raise OSError(error)
        if self.seccomp is not None and self.seccomp.available:
            error = self.seccomp.install()
            if error is not None:
                raise OSError(error)
        worker.serve(
            sock, output_limit=self.output_limit, workdir=workdir, timeout_s=self.timeout_s
        )


_HUGE = 2 << 20
_MADV_HUGEPAGE = 14
_MADV_COLLAPSE = 25


def collapse_heap() -> int:
    """Back the zygote's heap with transparent huge pages; returns the bytes collapsed.

    fork(2) copies, and exit(2) tears down, one page-table entry per 4 KiB page of private
    memory; on a 2 MiB huge page it is one entry, and a worker's first write into one splits
    only its own mapping (the copy it makes stays 4 KiB). Measured on the sympy zygote (about
    40 MiB of heap, nearly all collapsed): a bare fork + exit from 3.0 to 1.2 ms, sympy programs
    in the sandbox about 10% faster; the plain zygote's small heap gains little.

    Failure modes: none raised. Without THP in the kernel (or with it set to `never`), or
    without /proc, nothing is collapsed and 0 comes back: every call here is advice.
    """
    madvise = isolation.libc.madvise
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    try:
        with open("/proc/self/maps") as maps:
            regions = [line.split() for line in maps]
    except OSError:
        return 0
    done = 0
    for fields in regions:
        private_rw = fields[1].startswith("rw") and fields[1].endswith("p")
        if not private_rw or (len(fields) > 5 and fields[5] != "[heap]"):
            continue  # only anonymous memory and malloc's heap: Python's objects live there
        low, high = (int(v, 16) for v in fields[0].split("-"))
        start, end = -(-low // _HUGE) * _HUGE, high // _HUGE * _HUGE
        if end - start < _HUGE:
            continue
        madvise(start, end - start, _MADV_HUGEPAGE)
        if madvise(start, end - start, _MADV_COLLAPSE) == 0:
            done += end - start
    return done


def _fork() -> int:
    """fork(2) without os.fork's Python-level after-fork handlers. The zygote has a single
    thread, so they have nothing to repair, and running them (threading's, random's)
    copy-on-writes ~200 pages in every worker: more than half the cost of a trivial job."""
    return int(isolation.libc.fork())


def _close_all_but(keep: set[int]) -> None:
    start = 0
    for fd in sorted(keep):
        if fd > start:
            os.closerange(start, fd)
        start = fd + 1
    os.closerange(start, 1 << 16)


def main() -> None:
    config = json.loads(sys.argv[1])
    control = socket.socket(fileno=int(sys.argv[2]))
    # programs must not import from the zygote's working directory
    sys.path[:] = [p for p in sys.path if p and p != os.getcwd()]
    try:
        zygote = Zygote(config, control)
        before = set(sys.modules)
        _preload(zygote.flavour)
        collapse_heap()  # before isolating: the new root has no /proc
        imported = {m for m in set(sys.modules) - before if "." not in m}
        zygote.isolate(imported)
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        with contextlib.suppress(OSError):
            control.send(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode())
        return
    hello = {
        "layers": [[la.name, la.active, la.detail, la.mode] for la in zygote.layers],
        "mounts": zygote.mounts,
    }
    control.send(json.dumps(hello).encode())
    zygote.serve()


if __name__ == "__main__":
    main()
