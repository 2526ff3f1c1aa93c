"""`isolation_report()`: which isolation layers are really in force, for `mathsynth doctor`.

A layer counts as active only when the zygote set it up AND a probe program running inside a
real worker observes its effect (so a silently failed setup is reported, not assumed).
"""

from __future__ import annotations

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

def solution():
    import socket
    markers = ("KEY", "TOKEN", "SECRET", "PASSWORD")
    proc = os.listdir("/proc") if os.path.isdir("/proc") else []
    return {
        "network": _denied(lambda: socket.create_connection(("127.0.0.1", 9), timeout=0.2)),
        "filesystem": not proc and _denied(lambda: open("/usr/.sandbox-probe", "w")),
        "uid": os.getuid() != 0,
        "seccomp": _denied(lambda: os.waitpid(os.fork(), 0))
                   and _denied(lambda: socket.socket()),
        "rlimits": resource.getrlimit(resource.RLIMIT_AS)[0] != resource.RLIM_INFINITY,
        "environment": not any(m in k.upper() for k in os.environ for m in markers),
        "workdir": os.listdir(".") == [],
    }
"""


def isolation_report() -> list[tuple[str, bool, str]]:
    """(layer name, active, detail) for each isolation layer. Starts a one-worker sandbox for
    a second or two. Never raises: a sandbox that cannot start is reported as one row."""
    try:
        with Sandbox(workers=1, timeout_s=10.0) as sandbox:
            layers = sandbox.layers
            (probe,) = sandbox.run([SandboxJob(id="probe", code=_PROBE)])
    except SandboxError as exc:
        return [("sandbox", False, str(exc))]
    observed = probe.result if probe.status == "ok" and isinstance(probe.result, dict) else {}
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
    return rows
