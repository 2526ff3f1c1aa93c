"""Symbolic tracing of a straight-line `solution()` program into one Lean 4 expression.

The program is parsed with `ast`, never executed: each argument is bound to a variable leaf
(`term.Var`: its name and the record's value for it), each assignment binds a name to an
expression tree, and the `return` expression, with every name substituted, is the term the
Lean statement is about: over the arguments as named variables and the program's own literals.
Values are carried along in exact rational arithmetic (decimal literals such as 0.1 are read
as the decimals they spell, which is what Lean's `(0.1 : ℚ)` means too), so the caller can
check the traced value against the record's answer and pick the Lean number type (ℕ, ℤ or
ℚ: see `generators.formalize.term`).

Each node carries the Python type the program gives it and whether Python's value is exactly
the traced one (see `generators.formalize.term`). Conversions that look at a float's bits (`int()`,
`round()`, `Fraction(x)`, `math.floor`) are only traced on exact values, since
`int(0.29 * 100)` is 28 in Python but 29 in exact arithmetic.

`from fractions import Fraction` and `import math` (at module level or inside `solution()`)
bind names and compute nothing; calls are resolved through those bindings, so `Fraction(a, b)`
is exact ℚ division only when `Fraction` really is `fractions.Fraction`.

Functions the program defines (nested in `solution()`, as composed programs nest each seed's
whole source, or at module level) are inlined where they are called: the body is traced in a
fresh scope with the parameters bound to the argument terms (positional, keyword, defaults,
`**` of a dict literal). Python's scoping is followed (a name a function assigns anywhere is
local to it), and a free name must still be bound to what it was when the `def` ran, so late
binding cannot make a call mean something else. Recursion, *args, decorators and
global/nonlocal are refused.

A rounding conversion of a float that missed a whole value (`int(round(66 / 200 * 100))`) is
the identity when Python's own rounding of that float, replayed by `python_value`, gives the
exact value back.

Anything that is not straight-line arithmetic (loops, branches, calls other than a few pure
numeric built-ins and the program's own functions, containers other than a `**` dict, strings)
raises UntraceableProgramError naming the construct.
"""

from __future__ import annotations

import ast
import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mathsynth import pysource
from mathsynth.generators.formalize.term import (
    BinOp,
    Call,
    Expr,
    Neg,
    PyType,
    UntraceableProgramError,
    is_double,
    number,
    python_value,
    variable,
)

# Bounds that keep statements readable and Lean's kernel arithmetic cheap.
_MAX_LEAVES = 200
_MAX_EXPONENT = 1000
_MAX_DIGITS = 200

_IMPORTABLE = {"math", "fractions"}
# Names a program may call without importing them.
_BUILTINS = {"abs", "min", "max", "sum", "int", "float", "round"}
_ROUND_FUNCTIONS: dict[str, Callable[[Any], int]] = {
    "int": int,
    "round": round,
    "math.floor": math.floor,
    "math.ceil": math.ceil,
    "math.trunc": math.trunc,
}
_ROUNDING = set(_ROUND_FUNCTIONS)
_PY_OPS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
}
_LOOP_NAMES = {"For": "a for loop", "While": "a while loop", "If": "a branch (if)"}


@dataclass(frozen=True, slots=True)
class Traced:
    """A traced program: the term `solution()` returns and its argument names, in order."""

    term: Expr
    parameters: tuple[str, ...]


def trace_solution(program: str, variables: Mapping[str, Any]) -> Expr:
    """The term `solution(**variables)` returns (see `trace_program`)."""
    return trace_program(program, variables).term


def trace_program(program: str, variables: Mapping[str, Any]) -> Traced:
    """The term `solution(**variables)` returns, as an expression tree over the arguments
    (`Var` leaves holding their values) and literals.

    Raises UntraceableProgramError when the program is not valid Python, has no `solution`
    function, lacks a value for an argument, or uses anything but straight-line arithmetic
    and calls of the straight-line functions it defines.
    """
    try:
        module = pysource.parse(program)
    except SyntaxError as exc:
        raise UntraceableProgramError(f"program is not valid Python: {exc.msg}") from None
    tracer = _Tracer()
    for stmt in module.body:
        if _is_docstring(stmt):
            continue
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            tracer.import_names(stmt)
        elif isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
            tracer.assign(stmt)
        elif isinstance(stmt, ast.FunctionDef):
            tracer.define(stmt)
        else:
            raise UntraceableProgramError(_describe(stmt, "at module level"))
    solution = tracer.bindings.get("solution")
    if not isinstance(solution, _Function):
        raise UntraceableProgramError("program defines no solution() function")
    # Called after the whole module ran, so module-level names rebound after the `def` are
    # what Python sees: no closure check here.
    frame = tracer.frame(solution, closure=False)
    for arg in solution.node.args.args:
        if arg.arg in variables:
            frame.bindings[arg.arg] = variable(arg.arg, variables[arg.arg])
        else:
            frame.bindings[arg.arg] = solution.default(arg.arg)
    term = frame.body(solution.node.body)
    return Traced(term, tuple(a.arg for a in solution.node.args.args))


def _is_docstring(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Constant)
        and isinstance(stmt.value.value, str)
    )


def _describe(node: ast.AST, where: str = "") -> str:
    kind = type(node).__name__
    what = _LOOP_NAMES.get(kind, f"a {kind} statement")
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        what = "a bare call statement"
    line = getattr(node, "lineno", "?")
    return f"line {line}: {what} {where}".strip() + " is not straight-line arithmetic"


@dataclass(frozen=True, slots=True)
class _Import:
    """What an import bound a name to: "math", "fractions.Fraction", "math.floor", ..."""

    qualified: str


@dataclass(frozen=True, slots=True)
class _Mapping:
    """A dict literal with string keys, only ever passed on and `**`-unpacked into a call."""

    items: dict[str, Expr]


class _Function:
    """A traced `def`: defaults are evaluated where the `def` runs, as Python does, and
    `closure` remembers what each free name was bound to then (see `_Tracer.lookup`)."""

    def __init__(self, node: ast.FunctionDef, scope: _Tracer) -> None:
        args = node.args
        if node.decorator_list:
            raise UntraceableProgramError(f"line {node.lineno}: decorated function {node.name!r}")
        if args.vararg or args.kwarg or args.kwonlyargs or args.posonlyargs:
            raise UntraceableProgramError(
                f"line {node.lineno}: {node.name}() takes *args, **kwargs or special arguments"
            )
        self.node = node
        self.scope = scope
        self.params = [a.arg for a in args.args]
        self.locals = _local_names(node)
        self.defaults: dict[str, Binding | UntraceableProgramError] = {}
        with_defaults = self.params[len(self.params) - len(args.defaults) :]
        for name, default in zip(with_defaults, args.defaults, strict=True):
            try:
                self.defaults[name] = scope.value(default)
            except UntraceableProgramError as exc:
                # Only an error if a call leaves the argument out.
                self.defaults[name] = exc
        self.closure: dict[str, Binding | None] = {}
        for name in _loaded_names(node) - self.locals:
            try:
                self.closure[name] = scope.lookup(name, node.lineno)
            except UntraceableProgramError:
                self.closure[name] = None

    def default(self, param: str) -> Binding:
        found = self.defaults.get(param)
        if found is None:
            raise UntraceableProgramError(f"no value for argument {param!r} of {self.node.name}()")
        if isinstance(found, UntraceableProgramError):
            raise UntraceableProgramError(
                f"default of argument {param!r} of {self.node.name}(): {found}"
            )
        return found


Binding = Expr | _Import | _Mapping | _Function


class _Tracer:
    """One scope (the module, or one call of a function) walking its statements.

    `bindings` holds what each name of this scope is bound to so far; `local_names` is every
    name the function binds anywhere (Python decides scope statically: reading one before its
    assignment is an UnboundLocalError, not a read of the enclosing scope); `active` the
    function calls being traced, so recursion is refused rather than unrolled.
    """

    def __init__(
        self,
        parent: _Tracer | None = None,
        function: _Function | None = None,
        *,
        closure: bool = True,
        active: tuple[ast.FunctionDef, ...] = (),
    ) -> None:
        self.bindings: dict[str, Binding] = {}
        self.parent = parent
        self.function = function
        self.local_names = function.locals if function is not None else None
        self.check_closure = closure
        self.active = active

    def frame(self, function: _Function, *, closure: bool = True) -> _Tracer:
        """A fresh scope for one call of `function` (made from the caller's scope)."""
        if function.node in self.active:
            raise UntraceableProgramError(
                f"line {function.node.lineno}: {function.node.name}() calls itself (recursion)"
            )
        return _Tracer(
            function.scope, function, closure=closure, active=(*self.active, function.node)
        )

    def lookup(self, name: str, line: int) -> Binding | None:
        """What `name` refers to here: this scope, then the enclosing ones; None for a name
        no scope binds (a builtin, or a NameError in Python).

        A function reads its free names when it is called, so the enclosing binding must be
        the one it had when the `def` ran: a name rebound (or first bound) in between is
        refused, which keeps every traced call independent of where it happens.
        """
        scope: _Tracer | None = self
        crossed: list[_Function] = []
        while scope is not None:
            if name in scope.bindings:
                found = scope.bindings[name]
                for function in crossed:
                    if function.closure.get(name) is not found:
                        raise UntraceableProgramError(
                            f"line {line}: {function.node.name}() reads {name!r}, which is"
                            " rebound between its definition and its call"
                        )
                return found
            if scope.local_names is not None and name in scope.local_names:
                raise UntraceableProgramError(
                    f"line {line}: {name!r} is used before it is assigned"
                )
            if scope.function is not None and scope.check_closure:
                crossed.append(scope.function)
            scope = scope.parent
        return None

    def define(self, node: ast.FunctionDef) -> None:
        function = _Function(node, self)
        self.bindings[self._name_of(node.name, node.lineno)] = function
        if node.name in function.closure:
            # Its own name, bound just now: a call through it is recursion, refused in frame().
            function.closure[node.name] = function

    def import_names(self, stmt: ast.Import | ast.ImportFrom) -> None:
        """Record the names an import binds; it computes nothing, so it is traced as a no-op.

        Raises UntraceableProgramError for modules other than math/fractions, star and
        relative imports, and imports that would shadow a variable.
        """
        if isinstance(stmt, ast.Import):
            bound = {(a.asname or a.name): a.name for a in stmt.names}
            modules = list(bound.values())
        else:
            if stmt.level or any(a.name == "*" for a in stmt.names):
                raise UntraceableProgramError(f"line {stmt.lineno}: relative or star import")
            module = stmt.module or ""
            bound = {(a.asname or a.name): f"{module}.{a.name}" for a in stmt.names}
            modules = [module]
        for module in modules:
            if module not in _IMPORTABLE:
                raise UntraceableProgramError(f"line {stmt.lineno}: imports {module!r}")
        for local, qualified in bound.items():
            if local in self.bindings and not isinstance(self.bindings[local], _Import):
                raise UntraceableProgramError(
                    f"line {stmt.lineno}: import rebinds the variable {local!r}"
                )
            self.bindings[local] = _Import(qualified)

    def body(self, stmts: list[ast.stmt]) -> Expr:
        for stmt in stmts:
            if isinstance(stmt, ast.Return):
                if stmt.value is None:
                    raise UntraceableProgramError(f"line {stmt.lineno}: returns nothing")
                return self.expr(stmt.value)
            if isinstance(stmt, ast.Pass) or _is_docstring(stmt):
                continue
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                self.import_names(stmt)
            elif isinstance(stmt, ast.Assign | ast.AnnAssign | ast.AugAssign):
                self.assign(stmt)
            elif isinstance(stmt, ast.FunctionDef):
                self.define(stmt)
            else:
                raise UntraceableProgramError(_describe(stmt))
        name = self.function.node.name if self.function is not None else "solution"
        raise UntraceableProgramError(f"{name}() has no return statement")

    def assign(self, stmt: ast.Assign | ast.AnnAssign | ast.AugAssign) -> None:
        if isinstance(stmt, ast.AugAssign):
            target = self._name(stmt.target)
            current = self.bindings.get(target)
            # `x += 1` reads this scope's x: an enclosing one would be an UnboundLocalError.
            if not isinstance(current, Expr):
                raise UntraceableProgramError(f"line {stmt.lineno}: {target!r} used before set")
            op = _PY_OPS.get(type(stmt.op))
            if op is None:
                raise UntraceableProgramError(f"line {stmt.lineno}: unsupported operator")
            self.bindings[target] = self._binop(op, current, self.expr(stmt.value))
            return
        if isinstance(stmt, ast.AnnAssign):
            if stmt.value is None:
                return
            self.bindings[self._name(stmt.target)] = self.value(stmt.value)
            return
        value = stmt.value
        for target in stmt.targets:
            if isinstance(target, ast.Tuple):
                if not isinstance(value, ast.Tuple) or len(value.elts) != len(target.elts):
                    raise UntraceableProgramError(f"line {stmt.lineno}: unpacks a non-tuple")
                # Evaluate every right-hand side before binding, as Python does.
                values = [self.value(v) for v in value.elts]
                for name_node, bound in zip(target.elts, values, strict=True):
                    self.bindings[self._name(name_node)] = bound
            else:
                self.bindings[self._name(target)] = self.value(value)

    def _name(self, node: ast.AST) -> str:
        if not isinstance(node, ast.Name):
            line = getattr(node, "lineno", "?")
            raise UntraceableProgramError(f"line {line}: assigns to something other than a name")
        return self._name_of(node.id, node.lineno)

    def _name_of(self, name: str, line: int) -> str:
        scope: _Tracer | None = self
        while scope is not None and name not in scope.bindings:
            scope = scope.parent
        # Python would shadow the import with a local; refused so a call like Fraction(...)
        # always means what the import says.
        if scope is not None and isinstance(scope.bindings[name], _Import):
            raise UntraceableProgramError(f"line {line}: assigns to the imported name {name!r}")
        return name

    def value(self, node: ast.expr) -> Binding:
        """Like `expr`, but a name may also stand for a dict or a function, and a dict
        literal (string keys) is allowed: what may be bound to a name or passed to a call."""
        if isinstance(node, ast.Name):
            found = self.lookup(node.id, node.lineno)
            if found is None:
                raise UntraceableProgramError(f"line {node.lineno}: unknown name {node.id!r}")
            if isinstance(found, _Import):
                raise UntraceableProgramError(f"line {node.lineno}: uses {node.id!r} as a value")
            return found
        if isinstance(node, ast.Dict):
            items: dict[str, Expr] = {}
            for key, item in zip(node.keys, node.values, strict=True):
                if not isinstance(key, ast.Constant) or not isinstance(key.value, str):
                    raise UntraceableProgramError(
                        f"line {node.lineno}: dict with a key that is not a string literal"
                    )
                items[key.value] = self.expr(item)
            return _Mapping(items)
        return self.expr(node)

    def expr(self, node: ast.expr) -> Expr:
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, int | float):
                raise UntraceableProgramError(f"line {node.lineno}: non-numeric constant")
            return number(node.value)
        if isinstance(node, ast.Name):
            found = self.lookup(node.id, node.lineno)
            if found is None:
                raise UntraceableProgramError(f"line {node.lineno}: unknown name {node.id!r}")
            if not isinstance(found, Expr):
                raise UntraceableProgramError(f"line {node.lineno}: {node.id!r} is not a number")
            return found
        if isinstance(node, ast.UnaryOp):
            operand = self.expr(node.operand)
            if isinstance(node.op, ast.UAdd):
                return operand
            if isinstance(node.op, ast.USub):
                return Neg(
                    -operand.value,
                    operand.leaves,
                    py=operand.py,
                    exact=operand.exact,
                    operand=operand,
                )
        if isinstance(node, ast.BinOp):
            op = _PY_OPS.get(type(node.op))
            if op is not None:
                return self._binop(op, self.expr(node.left), self.expr(node.right))
        if isinstance(node, ast.Call):
            return self._call(node)
        raise UntraceableProgramError(
            f"line {getattr(node, 'lineno', '?')}: {type(node).__name__} expression "
            "is not arithmetic"
        )

    def _binop(self, op: str, left: Expr, right: Expr) -> BinOp:
        a, b = left.value, right.value
        try:
            if op == "+":
                value = a + b
            elif op == "-":
                value = a - b
            elif op == "*":
                value = a * b
            elif op == "/":
                value = a / b
            elif op == "//":
                value = Fraction(a // b)
            elif op == "%":
                value = a % b
            else:
                if b.denominator != 1 or not 0 <= b <= _MAX_EXPONENT:
                    raise UntraceableProgramError(f"exponent {b} is not a small natural number")
                value = a ** int(b)
        except ZeroDivisionError:
            raise UntraceableProgramError("division by zero") from None
        py = _result_type(op, left.py, right.py)
        exact = left.exact and right.exact
        if py == "float":
            # Correct rounding makes + - * / (and pow, in CPython's libm) exact when the exact
            # result is a double; float // and % go through fmod and are not trusted.
            exact = exact and op not in ("//", "%") and is_double(value)
        node = BinOp(
            value,
            left.leaves + right.leaves,
            py=py,
            exact=exact,
            op=op,
            left=left,
            right=right,
        )
        return self._checked(node)

    def _call(self, node: ast.Call) -> Expr:
        if isinstance(node.func, ast.Name):
            target = self.lookup(node.func.id, node.func.lineno)
            if isinstance(target, _Function):
                return self._inline(node, target)
        if (
            isinstance(node.func, ast.Attribute)
            and node.func.attr == "limit_denominator"
            and self._module_of(node.func.value) is None
        ):
            return self._limit_denominator(node)
        fn = self._callee(node.func)
        if node.keywords:
            raise UntraceableProgramError(f"line {node.lineno}: {fn}() with keyword arguments")
        if fn == "sum" and len(node.args) == 1 and isinstance(node.args[0], ast.List | ast.Tuple):
            items = [self.expr(e) for e in node.args[0].elts]
            total = items[0] if items else number(0)
            for item in items[1:]:
                total = self._binop("+", total, item)
            return total
        args = [self.expr(a) for a in node.args]
        if fn == "fractions.Fraction" and len(args) in (1, 2):
            return self._fraction(node, args)
        if fn == "float" and len(args) == 1:
            (arg,) = args
            exact = arg.exact and is_double(arg.value)
            return _retyped(arg, "float", exact)
        if fn in _ROUNDING and len(args) == 1:
            # Kept only as the identity: on a whole value these change nothing, and Lean has
            # no rounding that matches Python's for the other cases without extra lemmas.
            (arg,) = args
            if arg.value.denominator != 1:
                raise UntraceableProgramError(
                    f"line {node.lineno}: {fn}() rounds the non-integral value {arg.value}"
                )
            # A float that missed the whole value (66 / 200 * 100 is 33.00000000000001) is
            # still the identity when Python's own rounding of it lands on that value.
            if not arg.exact and _ROUND_FUNCTIONS[fn](python_value(arg)) != arg.value:
                self._require_exact(node, fn, arg)
            return _retyped(arg, "int", True)
        if fn == "abs" and len(args) == 1:
            (arg,) = args
            return self._checked(
                Call(abs(arg.value), arg.leaves, py=arg.py, exact=arg.exact, fn="abs", args=(arg,))
            )
        if fn in ("min", "max") and len(args) >= 2:
            pick = min if fn == "min" else max
            chosen = pick(args, key=lambda a: a.value)
            return self._checked(
                Call(
                    chosen.value,
                    sum(a.leaves for a in args),
                    py=chosen.py,
                    # Inexact floats could compare the other way round in Python.
                    exact=all(a.exact for a in args),
                    fn=fn,
                    args=tuple(args),
                )
            )
        raise UntraceableProgramError(f"line {node.lineno}: calls {fn}()")

    def _inline(self, node: ast.Call, function: _Function) -> Expr:
        """The term a call of a traced function returns: its body, traced in a fresh scope
        with the parameters bound to the argument terms, as Python binds them (positional,
        then keywords and `**dict`; a duplicate or unknown name is Python's TypeError)."""
        name = function.node.name
        if len(node.args) > len(function.params):
            raise UntraceableProgramError(f"line {node.lineno}: too many arguments to {name}()")
        given: dict[str, Binding] = {}
        for param, arg in zip(function.params, node.args, strict=False):
            if isinstance(arg, ast.Starred):
                raise UntraceableProgramError(f"line {node.lineno}: {name}(*...) call")
            given[param] = self.value(arg)
        for keyword in node.keywords:
            if keyword.arg is not None:
                named = {keyword.arg: self.value(keyword.value)}
            else:
                mapping = self.value(keyword.value)
                if not isinstance(mapping, _Mapping):
                    raise UntraceableProgramError(
                        f"line {node.lineno}: {name}(**...) of something other than a dict"
                    )
                named = dict(mapping.items)
            for param, bound in named.items():
                if param not in function.params or param in given:
                    raise UntraceableProgramError(
                        f"line {node.lineno}: {name}() gets an unknown or repeated"
                        f" argument {param!r}"
                    )
                given[param] = bound
        frame = self.frame(function)
        for param in function.params:
            bound = given[param] if param in given else function.default(param)
            frame.bindings[param] = bound
        return frame.body(function.node.body)

    def _limit_denominator(self, node: ast.Call) -> Expr:
        """`Fraction.limit_denominator(n)` returns the fraction itself when its denominator
        is at most n; anything else would be a different number, so it is refused."""
        assert isinstance(node.func, ast.Attribute)
        value = self.expr(node.func.value)
        if node.keywords or len(node.args) != 1:
            raise UntraceableProgramError(f"line {node.lineno}: limit_denominator() arguments")
        bound = self.expr(node.args[0])
        if value.py != "Fraction" or not value.exact:
            raise UntraceableProgramError(
                f"line {node.lineno}: limit_denominator() of something other than a Fraction"
            )
        if bound.value.denominator != 1 or value.value.denominator > bound.value:
            raise UntraceableProgramError(
                f"line {node.lineno}: limit_denominator({bound.value}) changes {value.value}"
            )
        return value

    def _fraction(self, node: ast.Call, args: list[Expr]) -> Expr:
        """`Fraction(a, b)` is exact division (Python only accepts int/Fraction there);
        `Fraction(x)` is x itself, provided a float x holds exactly the traced value."""
        if len(args) == 2:
            if any(a.py == "float" for a in args):
                raise UntraceableProgramError(
                    f"line {node.lineno}: Fraction() of a float numerator or denominator"
                )
            return _retyped(self._binop("/", args[0], args[1]), "Fraction", True)
        (arg,) = args
        self._require_exact(node, "Fraction", arg)
        return _retyped(arg, "Fraction", True)

    def _require_exact(self, node: ast.Call, fn: str, arg: Expr) -> None:
        if not arg.exact:
            raise UntraceableProgramError(
                f"line {node.lineno}: {fn}() of a float computation that binary floating point"
                f" does not represent exactly ({arg.value})"
            )

    def _module_of(self, node: ast.expr) -> str | None:
        """The module `node` evaluates to: an imported `math`, or `__import__('fractions')`."""
        if isinstance(node, ast.Name):
            found = self.lookup(node.id, node.lineno)
            if isinstance(found, _Import) and found.qualified in _IMPORTABLE:
                return found.qualified
            return None
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "__import__"
            and self.lookup("__import__", node.lineno) is None
            and not node.keywords
            and len(node.args) == 1
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in _IMPORTABLE
        ):
            return str(node.args[0].value)
        return None

    def _callee(self, func: ast.expr) -> str:
        """The qualified name a call refers to ("fractions.Fraction"), through the imports."""
        if isinstance(func, ast.Name):
            found = self.lookup(func.id, func.lineno)
            if isinstance(found, _Import):
                return found.qualified
            if found is not None:
                raise UntraceableProgramError(f"line {func.lineno}: calls the value {func.id!r}")
            return func.id if func.id in _BUILTINS else f"{func.id} (not imported)"
        if isinstance(func, ast.Attribute):
            module = self._module_of(func.value)
            if module is not None:
                return f"{module}.{func.attr}"
            if isinstance(func.value, ast.Name):
                return f"{func.value.id}.{func.attr}"
        return "<expression>"

    def _checked(self, expr: Expr) -> Expr:
        if expr.leaves > _MAX_LEAVES:
            raise UntraceableProgramError(f"term has more than {_MAX_LEAVES} leaves")
        v = expr.value
        if max(len(str(abs(v.numerator))), len(str(v.denominator))) > _MAX_DIGITS:
            raise UntraceableProgramError(f"intermediate value has more than {_MAX_DIGITS} digits")
        return expr


def _local_names(node: ast.FunctionDef) -> frozenset[str]:
    """Every name `node`'s body binds (parameters, assignment targets, imports, nested `def`s),
    wherever it does: Python makes them local to the whole function.

    Over-approximates (comprehension variables count too), which can only refuse more;
    `global` and `nonlocal` change scoping and are refused.
    """
    names = {a.arg for a in node.args.args}
    todo: list[ast.AST] = list(node.body)
    while todo:
        item = todo.pop()
        if isinstance(item, ast.Global | ast.Nonlocal):
            raise UntraceableProgramError(f"line {item.lineno}: global or nonlocal declaration")
        if isinstance(item, ast.Name) and isinstance(item.ctx, ast.Store | ast.Del):
            names.add(item.id)
        elif isinstance(item, ast.alias):
            names.add(item.asname or item.name.split(".")[0])
        elif isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(item.name)
            # Their bodies are their own scopes; decorators and defaults run here.
            todo.extend(item.decorator_list)
            if not isinstance(item, ast.ClassDef):
                todo.extend(item.args.defaults)
                todo.extend(d for d in item.args.kw_defaults if d is not None)
            continue
        elif isinstance(item, ast.Lambda):
            todo.extend(item.args.defaults)
            continue
        todo.extend(ast.iter_child_nodes(item))
    return frozenset(names)


def _loaded_names(node: ast.FunctionDef) -> set[str]:
    """Every name read anywhere inside `node`, nested functions included."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _result_type(op: str, left: PyType, right: PyType) -> PyType:
    """Python's type for `left op right` (`/` of two ints is a float; Fraction // is an int)."""
    if "float" in (left, right):
        return "float"
    if "Fraction" in (left, right):
        return "int" if op == "//" else "Fraction"
    return "float" if op == "/" else "int"


def _retyped(expr: Expr, py: PyType, exact: bool) -> Expr:
    """The same term after a value-preserving conversion (float(), int(), Fraction())."""
    return dataclasses.replace(expr, py=py, exact=exact)
