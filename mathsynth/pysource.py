"""`parse`: `ast.parse` made safe to call from several threads at once.

Batches run in threads, and several stages parse Python (programs traced for Lean, composed
programs, arithmetic in solution steps). CPython 3.11 up to 3.11.8 tracks the recursion depth
of its C-to-Python AST conversion in interpreter-wide state, so two threads converting at once
can fail with "SystemError: AST constructor recursion depth mismatch" (CPython gh-106905).
One process-wide lock around the call removes the race; the parses are small and the GIL
serialises them anyway, so the lock costs next to nothing.
"""

from __future__ import annotations

import ast
import threading
from typing import Literal

_LOCK = threading.Lock()


def parse(source: str, mode: Literal["exec", "eval"] = "exec") -> ast.Module | ast.Expression:
    """`ast.parse(source, mode=mode)` under the process-wide lock (SyntaxError propagates)."""
    with _LOCK:
        return ast.parse(source, mode=mode)
