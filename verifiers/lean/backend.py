"""The Lean checking interface every backend implements, and the items it checks.

A backend receives bodies of Lean code (theorem + proof, no imports) and answers one
`LeanResult` per item, in order. The backend owns the header (imports, options, `open`s) so it
can elaborate it once and reuse the environment: importing Mathlib costs tens of seconds,
checking a one-line statement milliseconds.

Backends never raise for infrastructure trouble (a REPL that will not start, dies or prints
garbage, a server that is down): the affected items come back `unchecked` with the reason, so a
build goes on and no row is ever reported as checked when Lean did not really run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from mathsynth.errors import MathsynthError
from mathsynth.records import LeanStatus

HEADER = (
    "import Mathlib\n"
    "import Aesop\n"
    "set_option maxHeartbeats 400000\n"
    "open BigOperators Real Nat Topology Rat"
)


class LeanBackendError(MathsynthError):
    """A Lean backend cannot be used (not startable, unreachable, speaks another protocol)."""


@dataclass(frozen=True, slots=True)
class LeanItem:
    """One piece of Lean code to check, without the header. `id` is only for tracing."""

    id: str
    code: str


@dataclass(frozen=True, slots=True)
class LeanResult:
    """The verdict for one item.

    `status` follows the acceptance rule in `verifiers.lean.acceptance`; `messages` holds Lean's
    messages as "severity line:col: text", or the reason when the item is `unchecked`.
    """

    id: str
    status: LeanStatus
    messages: list[str] = field(default_factory=list)


@runtime_checkable
class LeanBackend(Protocol):
    """Checks Lean code; results come back in input order, one per item."""

    name: str

    def check(self, items: list[LeanItem]) -> list[LeanResult]: ...

    def close(self) -> None: ...


def unchecked(item: LeanItem, reason: str) -> LeanResult:
    return LeanResult(item.id, "unchecked", [f"unchecked: {reason}"])
