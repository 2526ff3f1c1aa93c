"""`isolation_report()`: which isolation layers are really in force, for `mathsynth doctor`.

A layer counts as active only when the zygote set it up AND a probe program running inside a
real worker observes its effect (so a silently failed setup is reported, not assumed). The
mounts are listed as the probe sees them: each one must exist, and be read-only unless it is
meant to be writable.
"""

from __future__ import annotations

import os
from pathlib import Path

from mathsynth.verifiers.sandbox.jobs import SandboxJob
from mathsynth.verifiers.sandbox.pool import Sandbox, SandboxError

_PROBE = r"""
import os, resource

def _denied(action):
    try:
        action()
    except OSError:
        return True
    return False

def _hidden(path):
    def read():
        if os.path.isdir(path):
            os.listdir(path)
        else:
            open(path, 'rb').close()
    return _denied(read)

def _state(path):
    if not os.path.lexists(path):
        return "missing"
    if os.path.islink(path):
        return "link"
    try:
        if os.path.isdir(path):
            name = os.path.join(path, ".sandbox-probe")
            open(name, "x").close()
            os.unlink(name)
        else:
            open(path, "r+b").close()
        return "rw"
    except OSError:
        return "ro"

def solution(host_files, mounts):
    import socket
    markers = ("KEY", "TOKEN", "SECRET", "PASSWORD")
    seen = {path: _state(path) for path in mounts if "<" not in path and path != "/"}
    return {
        "network": _denied(lambda: socket.create_connection(("127.0.0.1", 9), timeout=0.2)),
        "filesystem": all(_hidden(p) for p in host_files)
                      and _denied(lambda: open("/usr/.sandbox-probe", "w")),
        "uid": os.getuid() != 0,
        "seccomp": _denied(lambda: os.waitpid(os.fork(), 0))
                   and _denied(lambda: socket.socket()),
        "rlimits": resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY,
        "environment": not any(m in k.upper() for k in os.environ for m in markers),
        "workdir": os.listdir(".") == [] and not _denied(lambda: open("probe", "w").close()),
        "pid": os.getpid(),
        "mounts": seen,
    }
"""


def _host_files() -> list[str]:
    """Host paths that exist and that no program may read: this project's files, /etc,
    the home directories (the probe checks they cannot be opened or listed)."""
    project = Path(__file__).resolve().parents[2]
    candidates = [str(project / "pyproject.toml"), str(project), "/etc/passwd", "/root", "/home"]
    return [p for p in candidates if os.path.exists(p)]


def isolation_report(include_mounts: bool = False) -> list[tuple[str, bool, str]]:
    """(layer name, active, detail) for each isolation layer; with `include_mounts`, then one
    ("mount <path>", as planned, what it shows) row per entry of the program's filesystem.
    Starts a one-worker sandbox for a second or two. Never raises: a sandbox that cannot
    start is reported as one row."""
    try:
        with Sandbox(workers=1, timeout_s=10.0, warn_degraded=False) as sandbox:
            layers = sandbox.layers
            mounts = sandbox.mounts
            kwargs = {"host_files": _host_files(), "mounts": [p for p, _ in mounts]}
            # one worker of each zygote (see pool.FLAVOURS): the second probe mentions sympy
            codes = [_PROBE, _PROBE + "\nimport sympy\n"]
            probes = sandbox.run(
                [SandboxJob(id=f"probe{i}", code=c, kwargs=kwargs) for i, c in enumerate(codes)]
            )
    except SandboxError as exc:
        return [("sandbox", False, str(exc))]
    failed = [p for p in probes if p.status != "ok" or not isinstance(p.result, dict)]
    probe = failed[0] if failed else probes[0]
    results = [p.result for p in probes if not failed]
    observed: dict[str, object] = {}
    for name in {k for r in results for k in r}:
        values = [r.get(name) for r in results]
        observed[name] = all(values) if all(isinstance(v, bool) for v in values) else values[-1]
    observed["process"] = len({r.get("pid") for r in results}) == 2
    rows = []
    for layer in layers:
        seen = observed.get(layer.name)
        if layer.active and seen is False:
            rows.append(
                (layer.name, False, f"set up but not effective in a worker: {layer.detail}")
            )
        elif layer.active and seen is None and probe.status != "ok":
            rows.append((layer.name, False, f"probe failed ({probe.error}): {layer.detail}"))
        else:
            rows.append((layer.name, layer.active, layer.detail))
    if include_mounts:
        seen_mounts = observed.get("mounts") or {}
        for path, what in mounts:
            state = seen_mounts.get(path)
            if state is None:  # the host root or the per-job directory: nothing to probe
                rows.append((f"mount {path}", probe.status == "ok" and path != "/", what))
                continue
            expected = "rw" if "read-write" in what else "link" if "symlink" in what else "ro"
            ok = state == expected
            rows.append(
                (f"mount {path}", ok, what if ok else f"{what}, but a program sees {state}")
            )
    return rows
