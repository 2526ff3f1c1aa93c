"""Sandboxed execution of untrusted Python programs in a pool of pre-forked isolated workers.

from mathsynth.verifiers.sandbox import Sandbox, SandboxJob, SandboxResult

with Sandbox(workers=None, timeout_s=5.0, memory_mb=1024, recycle_after=5000) as sb:
    results = sb.run([SandboxJob(id="a", code="def solution(x):\\n    return x * 2",
                                 kwargs={"x": 3})])
"""

from mathsynth.verifiers.sandbox.jobs import SandboxJob, SandboxResult, Status
from mathsynth.verifiers.sandbox.pool import Sandbox, SandboxError
from mathsynth.verifiers.sandbox.report import isolation_report

__all__ = [
    "Sandbox",
    "SandboxError",
    "SandboxJob",
    "SandboxResult",
    "Status",
    "isolation_report",
]
