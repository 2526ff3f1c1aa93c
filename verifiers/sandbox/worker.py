"""The worker side: runs jobs in a forked, isolated process.

Wire protocol (newline-delimited JSON over the worker's own Unix socket):
  parent -> worker, one line per batch:
      {"codes": [source, ...], "jobs": [[index, code_no, kwargs, capture_locals, checks], ...],
       "once": true|absent}
      (a job may carry a sixth element, true: render the result and sympy locals as LaTeX)
  worker -> parent, one line per job as soon as it finishes:
      {"i": index, "s": status, "r": result, "o": stdout, "e": error, "l": locals, "f": failed}
  plus "x": 1 when the worker exits right after that job (memory exhausted or a preloaded
  module was tampered with) so the parent reruns the rest of the batch on a fresh worker.

"once" is how every untrusted program runs: the worker was forked for this one program, runs its
jobs (one program's inputs) and exits; the parent reads one line per job from this socket and
then kills the process, so whatever the program does to its interpreter (frames, gc, builtins,
modules, the socket) can reach nothing but its own results. Without "once" (only for the bundled
library's own programs, see pool.py) the worker serves batch after batch: each job gets a fresh
globals dict and builtins copy, and shared module state is checked after every job
(`_Integrity`) as a guard against bugs, not against attacks."""

from __future__ import annotations

import ast
import builtins
import io
import json
import math
import os
import shutil
import socket
import sys
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

from mathsynth.verifiers.sandbox.codec import decode, encode, is_scalar, to_safe
from mathsynth.verifiers.sandbox.isolation import limit_cpu_seconds

_CAPTURE = "__sandbox_capture__"
_LOCALS = "__sandbox_locals__"
_MAX_ERROR_CHARS = 2000
_CODE_CACHE_SIZE = 512


class _CappedStream(io.TextIOBase):
    """A text sink keeping the first `limit` characters; the rest is counted and dropped."""

    def __init__(self, limit: int) -> None:
        self._parts: list[str] = []
        self._room = limit
        self.dropped = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        n = len(s)
        if self._room >= n:
            self._parts.append(s)
            self._room -= n
        else:
            if self._room > 0:
                self._parts.append(s[: self._room])
            self.dropped += n - max(self._room, 0)
            self._room = 0
        return n

    def getvalue(self) -> str:
        text = "".join(self._parts)
        if self.dropped:
            text += f"\n[... {self.dropped} more characters dropped]"
        return text


class _ReturnCapture(ast.NodeTransformer):
    """Rewrites `return X` in solution()'s own body (not nested functions) so the value and
    the frame's locals are handed to the capture hook on the way out."""

    def visit_FunctionDef(self, node: ast.AST) -> ast.AST:
        return node

    visit_AsyncFunctionDef = visit_FunctionDef
    visit_Lambda = visit_FunctionDef
    visit_ClassDef = visit_FunctionDef

    def visit_Return(self, node: ast.Return) -> ast.Return:
        value = node.value if node.value is not None else ast.Constant(None)
        return ast.copy_location(ast.Return(value=_capture_call(value)), node)


def _capture_call(value: ast.expr) -> ast.Call:
    # value first, so names bound by a walrus in the return expression are captured too
    locals_call = ast.Call(func=ast.Name(_LOCALS, ast.Load()), args=[], keywords=[])
    return ast.Call(func=ast.Name(_CAPTURE, ast.Load()), args=[value, locals_call], keywords=[])


def compile_program(source: str, capture: bool) -> Any:
    """Compile a program; with `capture`, top-level `def solution` reports its locals.

    Raises SyntaxError (reported as the job's error) like a plain compile() would.
    """
    if not capture:
        return compile(source, "<program>", "exec")
    tree = ast.parse(source, "<program>", "exec")
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == "solution":
            node.body = [_ReturnCapture().visit(stmt) for stmt in node.body]
            node.body.append(ast.Return(value=_capture_call(ast.Constant(None))))
    ast.fix_missing_locations(tree)
    return compile(tree, "<program>", "exec")


class _Integrity:
    """Snapshot of the shared, preloaded state a program could tamper with.

    Checked after every job; a mismatch retires the worker (it is cheap to fork a new one)
    rather than trying to repair the damage.
    """

    def __init__(self) -> None:
        import fractions

        self._dicts: list[tuple[Any, dict[str, Any]]] = []
        watched: list[Any] = [builtins, math, fractions, Fraction, json, io]
        if "sympy" in sys.modules:
            watched.append(sys.modules["sympy"])
        for obj in watched:
            self._dicts.append((obj, dict(vars(obj))))
        self._recursion_limit = sys.getrecursionlimit()
        self._hooks = self._sys_hooks()

    @staticmethod
    def _sys_hooks() -> tuple[Any, ...]:
        import gc

        return (
            sys.gettrace(),
            sys.getprofile(),
            sys.displayhook,
            sys.excepthook,
            sys.unraisablehook,
            len(gc.callbacks),
            tuple(sys.meta_path),
            tuple(sys.path_hooks),
        )

    def intact(self) -> bool:
        sys.setrecursionlimit(self._recursion_limit)
        if self._sys_hooks() != self._hooks:
            return False
        return all(vars(obj) == snapshot for obj, snapshot in self._dicts)


class Worker:
    """Runs the jobs of the batches read from `sock`: one batch and exit ("once"), or
    batches until the parent closes the socket."""

    def __init__(
        self, sock: socket.socket, *, output_limit: int, workdir: str, timeout_s: float
    ) -> None:
        self._sock = sock
        self._cpu_per_job = math.ceil(timeout_s) + 1
        self._output_limit = output_limit
        self._workdir = workdir
        self._codes: dict[tuple[str, bool], Any] = {}
        self._checks: dict[str, Any] = {}
        # Taken before a batch worker's first job. A "once" worker needs neither: nothing
        # runs after its program, so it may change its builtins as it likes.
        self._integrity: _Integrity | None = None
        self._base_builtins: dict[str, Any] | None = None
        self._check_globals: dict[str, Any] = {"math": math, "Fraction": Fraction}
        if "sympy" in sys.modules:  # constraints of exact-answer seeds may use sympy
            self._check_globals["sympy"] = sys.modules["sympy"]

    def serve(self) -> None:
        for line in _lines(self._sock):
            message = json.loads(line)
            once = bool(message.get("once"))
            codes: list[str] = message["codes"]
            if not once and self._integrity is None:
                self._base_builtins = dict(vars(builtins))
                self._integrity = _Integrity()
            limit_cpu_seconds(self._cpu_per_job * len(message["jobs"]))
            for index, code_no, kwargs, capture, checks, *latex in message["jobs"]:
                reply, retire = self._run_job(
                    codes[code_no],
                    decode(kwargs),
                    capture,
                    checks,
                    latex=bool(latex and latex[0]),
                    check_integrity=not once,
                )
                reply["i"] = index
                if retire:
                    reply["x"] = 1
                self._send(reply)
                if retire:
                    return
            if once:  # one program's jobs: the process ends with them
                return

    def _send(self, reply: dict[str, Any]) -> None:
        try:
            data = json.dumps(reply, separators=(",", ":"))
        except ValueError as exc:  # e.g. an int too long to print
            data = json.dumps(
                {"i": reply["i"], "s": "error", "e": f"result not serializable: {exc}"}
            )
        self._sock.sendall(data.encode("utf-8", "surrogatepass") + b"\n")

    def _run_job(
        self,
        source: str,
        kwargs: dict[str, Any],
        capture_locals: bool,
        checks: list[str],
        *,
        check_integrity: bool,
        latex: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        capture = capture_locals or bool(checks)
        captured: list[dict[str, Any]] = []

        def capture_hook(value: Any, frame_locals: dict[str, Any]) -> Any:
            captured.append(frame_locals)
            return value

        namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": self._builtins()}
        if capture:
            namespace[_CAPTURE] = capture_hook
            namespace[_LOCALS] = builtins.locals
        out = _CappedStream(self._output_limit)
        err = _CappedStream(self._output_limit)
        reply: dict[str, Any] = {"s": "ok", "r": None, "e": None, "l": None, "f": []}
        retire = False
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        try:
            code = self._compiled(source, capture)
            exec(code, namespace)
            solution = namespace.get("solution")
            result = solution(**kwargs) if callable(solution) else None
            safe = _latex(result) if latex else to_safe(result)
            raw_locals = captured[-1] if captured else None
            if capture_locals and raw_locals is not None:
                shown = {
                    k: to_safe(v) if is_scalar(v) else _latex(v)
                    for k, v in raw_locals.items()
                    if not k.startswith("__sandbox") and (is_scalar(v) or (latex and _is_sympy(v)))
                }
                reply["l"] = encode(shown)
            if checks:
                reply["f"] = self._failed_checks(checks, kwargs, raw_locals or {}, result)
            reply["r"] = encode(safe)
        except SystemExit as exc:
            if exc.code not in (None, 0):
                reply["s"], reply["e"] = "error", f"SystemExit: {exc.code}"
        except MemoryError:
            reply["s"], reply["e"] = "memory", "MemoryError: memory limit exceeded"
            retire = True  # the heap may be fragmented or half-updated: start clean
        except BaseException as exc:  # noqa: BLE001 - any failure of the program is its result
            reply["s"], reply["e"] = "error", _describe(exc)
        finally:
            sys.stdout, sys.stderr = saved
        reply["o"] = out.getvalue()
        if check_integrity and not self._reset():
            retire = True
        return reply, retire

    def _builtins(self) -> Any:
        """A fresh copy of the builtins for each job of a batch worker; the module itself
        for a worker that runs one job only."""
        return dict(self._base_builtins) if self._base_builtins is not None else builtins

    def _compiled(self, source: str, capture: bool) -> Any:
        key = (source, capture)
        code = self._codes.get(key)
        if code is None:
            if len(self._codes) >= _CODE_CACHE_SIZE:
                self._codes.clear()
            code = self._codes[key] = compile_program(source, capture)
        return code

    def _failed_checks(
        self,
        checks: list[str],
        kwargs: dict[str, Any],
        frame_locals: dict[str, Any],
        answer: Any,
    ) -> list[str]:
        scope = {**self._check_globals, **kwargs, **frame_locals, "answer": answer}
        scope["__builtins__"] = self._builtins()
        failed = []
        for check in checks:
            try:
                code = self._checks.get(check)
                if code is None:
                    code = self._checks[check] = compile(check, "<check>", "eval")
                if not eval(code, scope):
                    failed.append(check)
            except Exception:  # noqa: BLE001 - a check that raises counts as failed
                failed.append(check)
        return failed

    def _reset(self) -> bool:
        """Undo what one program may leave for the next; False when the worker must retire."""
        try:
            if os.getcwd() != self._workdir:
                os.chdir(self._workdir)
            with os.scandir(self._workdir) as entries:
                leftovers = [e.path for e in entries]
            for path in leftovers:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            _reset_numeric_contexts()
        except Exception:  # noqa: BLE001 - cannot clean up: retire instead
            return False
        return self._integrity is not None and self._integrity.intact()


def _is_sympy(value: Any) -> bool:
    sympy = sys.modules.get("sympy")
    return sympy is not None and isinstance(value, sympy.Basic)


def _latex(value: Any) -> str:
    """`sympy.latex` of a program's value (ints and Fractions become sympy numbers first), the
    exact-answer format users reproduce with `sympy.latex(solution(**variables))`."""
    import sympy

    value = sympy.sympify(value)
    if value.has(sympy.Float):
        # An exact answer written from a float would be a rounded decimal dressed as exact.
        raise TypeError(f"an exact answer must not contain floats: {value}")
    return str(sympy.latex(value))


def _reset_numeric_contexts() -> None:
    # precision settings are process-global and would silently change the next program's math
    decimal = sys.modules.get("decimal")
    if decimal is not None:
        decimal.setcontext(decimal.Context())
    mpmath = sys.modules.get("mpmath")
    if mpmath is not None and mpmath.mp.prec != 53:
        mpmath.mp.prec = 53


def _describe(exc: BaseException) -> str:
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a hostile __str__
        text = ""
    message = f"{name}: {text}" if text else name
    return message[:_MAX_ERROR_CHARS]


def _lines(sock: socket.socket) -> Iterator[bytes]:
    """The newline-terminated messages arriving on `sock`, until the parent closes it."""
    buffer = b""
    while True:
        end = buffer.find(b"\n")
        if end >= 0:
            yield buffer[: end + 1]
            buffer = buffer[end + 1 :]
            continue
        chunk = sock.recv(1 << 20)
        if not chunk:
            return
        buffer += chunk


def serve(sock: socket.socket, *, output_limit: int, workdir: str, timeout_s: float) -> None:
    """Entry point in the forked, isolated child: serve one batch ("once") or until EOF."""
    Worker(sock, output_limit=output_limit, workdir=workdir, timeout_s=timeout_s).serve()
