"""What goes into the sandbox (SandboxJob) and what comes out (SandboxResult)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Status = Literal["ok", "error", "timeout", "memory", "killed"]
STATUSES: tuple[Status, ...] = ("ok", "error", "timeout", "memory", "killed")


@dataclass(frozen=True, slots=True)
class SandboxJob:
    """One program run: `code` is executed in a fresh namespace; if it defines `solution`,
    `solution(**kwargs)` is called and its return value becomes the result.

    `checks` are Python boolean expressions evaluated after a successful run over the kwargs,
    solution()'s locals and `answer` (the return value); the ones that are False or raise are
    reported in `SandboxResult.failed_checks`.

    `latex`: the result (and every captured local that is a sympy object but not a plain
    number) comes back as the string `sympy.latex` writes for it, rendered in the worker
    where the value lives (sympy objects do not cross the process boundary).

    `epilogue`: the pipeline's own code, run after `code` in the same namespace (the exact-
    answer check wraps `solution` this way). Whether a job is trusted is decided on `code`
    alone, so it must never hold text that came from a program, a model or a dataset.
    """

    id: str
    code: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    capture_locals: bool = False
    checks: Sequence[str] = ()
    latex: bool = False
    epilogue: str = ""

    @property
    def source(self) -> str:
        """What the worker executes: `code`, then `epilogue`."""
        return self.code + self.epilogue


@dataclass(slots=True)
class SandboxResult:
    """The outcome of one SandboxJob, in the same order as the jobs given to Sandbox.run.

    status: "ok" (ran to the end), "error" (raised; `error` holds "Type: message"),
    "timeout" (exceeded the wall-clock limit), "memory" (hit the memory limit),
    "killed" (the worker process died, e.g. a segfault or os._exit).
    """

    id: str
    status: Status
    result: Any = None
    stdout: str = ""
    error: str | None = None
    locals: dict[str, Any] | None = None
    failed_checks: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Ran to the end and every check held."""
        return self.status == "ok" and not self.failed_checks

    def to_row(self) -> dict[str, Any]:
        """The JSONL row of `mathsynth sandbox run` (Fractions as "n/d" strings)."""
        from mathsynth.verifiers.sandbox.codec import to_plain_json

        return {
            "id": self.id,
            "status": self.status,
            "result": to_plain_json(self.result),
            "stdout": self.stdout,
            "error": self.error,
        }
