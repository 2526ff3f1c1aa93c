"""`ast.parse` for code that runs in threads: one process-wide lock around it.

A build runs its batches in threads, and several stages parse Python (programs, solution
steps, composed code). CPython 3.11 keeps the AST constructor's recursion depth in
interpreter-wide state, so two threads building AST objects at once can fail with
"SystemError: AST constructor recursion depth mismatch" (python/cpython#106905), which crashed
whole builds. Parsing is short and holds the GIL anyway, so serialising it costs nothing
measurable. Every `ast.parse` in the pipeline goes through `module` or `expression`.
"""

from __future__ import annotations

import ast
import threading

_LOCK = threading.Lock()


def module(source: str) -> ast.Module:
    """`ast.parse(source)` under the lock; raises SyntaxError as it does."""
    with _LOCK:
        return ast.parse(source)


def expression(source: str) -> ast.Expression:
    """`ast.parse(source, mode="eval")` under the lock; raises SyntaxError as it does."""
    with _LOCK:
        return ast.parse(source, mode="eval")
