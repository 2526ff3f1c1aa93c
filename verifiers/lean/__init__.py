"""Lean 4 checking: one interface (`LeanBackend.check`), two backends (a pool of Lean REPLs
over JSON stdio, a Kimina Lean Server over HTTP), and the acceptance rule they share."""

from mathsynth.verifiers.lean.acceptance import judge
from mathsynth.verifiers.lean.backend import (
    HEADER,
    LeanBackend,
    LeanBackendError,
    LeanItem,
    LeanResult,
)
from mathsynth.verifiers.lean.backends import describe_lean_backend, make_lean_backend
from mathsynth.verifiers.lean.kimina import KiminaBackend
from mathsynth.verifiers.lean.repl import ReplBackend

__all__ = [
    "HEADER",
    "KiminaBackend",
    "LeanBackend",
    "LeanBackendError",
    "LeanItem",
    "LeanResult",
    "ReplBackend",
    "describe_lean_backend",
    "judge",
    "make_lean_backend",
]
