"""The zygote: a process that imports the preloaded modules once, isolates itself, and forks
a ready worker whenever the parent asks for one (a fork costs milliseconds; a fresh Python
importing sympy costs about a second).

Started by the parent with `python -c ... CONFIG_JSON CONTROL_FD`. Control protocol on the
Unix socket CONTROL_FD:
  zygote -> parent, once:  {"layers": [[name, active, detail], ...]} or {"error": "..."}
  parent -> zygote:        "<slot>\n"   (fork a worker for this slot)
  zygote -> parent:        "<pid>\n" with SCM_RIGHTS [worker socket, pidfd]
The zygote exits when the parent closes the control socket.
"""

from __future__ import annotations

import gc
import json
import os
import shutil
import signal
import socket
import sys
from typing import Any

from mathsynth.verifiers.sandbox import isolation
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


def _preload() -> None:
    for name in PRELOADED:
        __import__(name)
    import sympy

    # touch the lazily-built parts (printing, caches, assumptions) once, before forking
    x = sympy.Symbol("x")
    str(sympy.simplify((x**2 - 1) / (x - 1)) + sympy.Rational(1, 3))
    sympy.solve(x**2 - 4, x)
    gc.collect()
    gc.freeze()  # keep preloaded objects out of the workers' collections and copy-on-write


class Zygote:
    def __init__(self, config: dict[str, Any], control: socket.socket) -> None:
        self.control = control
        self.limits = Limits(**config["limits"])
        self.output_limit: int = config["output_limit"]
        self.timeout_s: float = config["timeout_s"]
        self.drop_uid: bool = config["drop_uid"]
        self.layers: list[Layer] = []
        self.seccomp = Seccomp()
        self.private_fs = False
        self.base_dir = ""
        # a uid range per zygote so workers of two pools cannot signal each other either
        self.uid_base = 1_000_000 + (os.getpid() % 100_000) * 1000

    def isolate(self, tmpfs_mb: int) -> None:
        root = os.geteuid() == 0
        if root:
            self.layers.append(isolation.enter_network_namespace())
            needed = [sys.prefix, sys.base_prefix, sys.exec_prefix, *sys.path]
            fs = isolation.enter_filesystem_namespace(tmpfs_mb, [p for p in needed if p])
            self.private_fs = fs.active
            self.layers.append(fs)
        else:
            self.layers.append(Layer("network", False, "needs root to unshare (not root)"))
            self.layers.append(Layer("filesystem", False, "needs root to unshare (not root)"))
        self.base_dir = "/tmp/mathsynth-sandbox" if self.private_fs else ""
        if not self.base_dir:
            import tempfile

            self.base_dir = tempfile.mkdtemp(prefix="mathsynth-sandbox-")
        os.makedirs(self.base_dir, exist_ok=True)
        os.chmod(self.base_dir, 0o711)
        uid_ok = root and self.drop_uid
        self.layers.append(
            Layer(
                "uid",
                uid_ok,
                f"each worker runs as its own uid from {self.uid_base}"
                if uid_ok
                else "not root: workers keep the caller's uid",
            )
        )
        self.layers.append(
            Layer(
                "seccomp",
                self.seccomp.available,
                "denies socket, fork/clone/exec, ptrace, namespace and mount syscalls"
                if self.seccomp.available
                else str(self.seccomp.error),
            )
        )
        lim = self.limits
        self.layers.append(
            Layer(
                "rlimits",
                True,
                f"address space {lim.memory_mb} MiB, file size {lim.file_size_mb} MiB, "
                f"{lim.open_files} open files, no core dumps, CPU time per batch",
            )
        )
        self.layers.append(Layer("environment", True, "allow-list environment, HOME unset"))
        self.layers.append(Layer("workdir", True, f"private empty directory under {self.base_dir}"))

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # workers are reaped automatically
        reader = self.control.makefile("rb")
        try:
            for line in reader:
                slot = int(line)
                self._fork_worker(slot, reader)
        finally:
            if not self.private_fs:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def _fork_worker(self, slot: int, reader: Any) -> None:
        workdir = os.path.join(self.base_dir, f"w{slot}")
        # the previous worker of this slot is dead (the parent kills before it respawns)
        shutil.rmtree(workdir, ignore_errors=True)
        os.mkdir(workdir, 0o700)
        parent_end, child_end = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                reader.close()
                self.control.close()
                parent_end.close()
                self._become_worker(child_end, slot, workdir)
                code = 0
            finally:
                os._exit(code)
        child_end.close()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = -1
        fds = [parent_end.fileno()] + ([pidfd] if pidfd >= 0 else [])
        socket.send_fds(self.control, [f"{pid}\n".encode()], fds)
        parent_end.close()
        if pidfd >= 0:
            os.close(pidfd)

    def _become_worker(self, sock: socket.socket, slot: int, workdir: str) -> None:
        from mathsynth.verifiers.sandbox.worker import serve_forever

        uid = self.uid_base + slot

        def setup() -> None:
            os.setsid()
            isolation.set_parent_death_signal()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            isolation.redirect_stdio()
            if os.geteuid() == 0 and self.drop_uid:
                os.chown(workdir, uid, uid)
            os.chdir(workdir)
            os.environ["TMPDIR"] = workdir  # tempfile.* then stays inside the private dir
            isolation.apply_rlimits(self.limits)
            if os.geteuid() == 0 and self.drop_uid:
                isolation.drop_privileges(uid)
            isolation.limit_processes()
            error = self.seccomp.install()
            if error is not None and self.seccomp.available:
                raise RuntimeError(error)

        serve_forever(
            sock,
            output_limit=self.output_limit,
            workdir=workdir,
            timeout_s=self.timeout_s,
            setup=setup,
        )


def main() -> None:
    config = json.loads(sys.argv[1])
    control = socket.socket(fileno=int(sys.argv[2]))
    try:
        zygote = Zygote(config, control)
        _preload()
        zygote.isolate(config["tmpfs_mb"])
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        control.sendall(json.dumps({"error": f"{type(exc).__name__}: {exc}"}).encode() + b"\n")
        return
    layers = [[layer.name, layer.active, layer.detail] for layer in zygote.layers]
    control.sendall(json.dumps({"layers": layers}).encode() + b"\n")
    zygote.serve()


if __name__ == "__main__":
    main()
