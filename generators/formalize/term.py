"""The term a traced program folds into, and its Lean 4 rendering.

`generators.formalize.trace` builds these trees from a program's AST; this module holds what
is known about a tree whatever it came from: its exact rational value, the Lean number type in
which it means what the Python program computed (`choose_domain`), its Lean source
(`render`), and the value Python itself computes for it (`python_value`). The Lean number type
is:

- ℕ when every value, intermediate ones included, is a whole number >= 0 and no negation or
  `abs` occurs: then ℕ's truncated subtraction and division agree with Python's;
- ℤ when every value is whole: `/` is then always exact, and `//`, `%` are only accepted with
  a positive divisor, where Lean's Euclidean division agrees with Python's floor division;
- ℚ otherwise, where `//` and `%` are not translated.

Leaves that come from the program's arguments are `Var`s: they render as the argument's name
(`price`), typed by their own value (ℕ for a whole value >= 0, ℤ for a negative whole one, ℚ
otherwise) and cast where the term's domain is wider (`(price : ℚ)`), so a statement can bind
them with hypotheses (`(h₀ : price = 80)`). Literal leaves carry an explicit type ascription,
`(24 : ℚ)`, unless a variable in the same arithmetic expression already fixes the type Lean
elaborates them in (`price * 25 / 100`); inside function applications such as `min a b` and
exponents each argument is its own expression, so elaboration cannot fall back to ℕ there.
`render(..., closed=True)` writes variables as their values instead (a closed numeral term).

Each node also carries the Python type the program gives it (int, float or Fraction, by
Python's rules: `int / int` is a float, `Fraction(a, b)` a Fraction) and whether Python's value
is exactly the traced one. A float node is exact when its inputs are and its exact value is a
binary double: + - * / are correctly rounded, so they then lose nothing.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any, Literal

from mathsynth.errors import MathsynthError

Domain = Literal["ℕ", "ℤ", "ℚ"]
PyType = Literal["int", "float", "Fraction"]

_DECIMAL_TEXT = re.compile(r"-?\d+\.\d+")
_NUMBER_TEXT = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
_STRING_NUMBER = re.compile(r"-?\d+(?:\.\d+|/\d+)?")
# Lean precedences: + - 65, * / % 70, ^ 75 (right associative).
_PRECEDENCE = {"+": 65, "-": 65, "*": 70, "/": 70, "//": 70, "%": 70, "**": 75}
_PY_FUNCS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
    "//": operator.floordiv,
    "%": operator.mod,
    "**": operator.pow,
}


class UntraceableProgramError(MathsynthError):
    """The program is not straight-line arithmetic that can be folded into one Lean term."""


@dataclass(frozen=True, slots=True)
class Expr:
    """A node of the traced term; `value` is its exact value, `leaves` its leaf count, `py` the
    type Python gives it and `exact` whether Python's value equals `value` (floats may not)."""

    value: Fraction
    leaves: int = 1
    py: PyType = "int"
    exact: bool = True


@dataclass(frozen=True, slots=True)
class Num(Expr):
    """A literal; `text` keeps a decimal spelling ("0.15") when the source had one."""

    text: str | None = None


@dataclass(frozen=True, slots=True)
class Var(Expr):
    """An argument of the program, bound to the record's value; `text` keeps a decimal
    spelling of the value ("0.05") when it had one."""

    name: str = "x"
    text: str | None = None


@dataclass(frozen=True, slots=True)
class BinOp(Expr):
    op: str = "+"
    left: Expr = field(default_factory=lambda: Num(Fraction(0)))
    right: Expr = field(default_factory=lambda: Num(Fraction(0)))


@dataclass(frozen=True, slots=True)
class Neg(Expr):
    operand: Expr = field(default_factory=lambda: Num(Fraction(0)))


@dataclass(frozen=True, slots=True)
class Call(Expr):
    """`abs`, `min` or `max` (the only calls kept in the term)."""

    fn: str = "abs"
    args: tuple[Expr, ...] = ()


def number(value: Any, text: str | None = None) -> Num:
    """A literal from a Python number or a numeric string ("3/4", "2.5")."""
    if isinstance(value, bool):
        raise UntraceableProgramError(f"boolean value {value!r} is not a number")
    if isinstance(value, int | Fraction):
        py: PyType = "int" if isinstance(value, int) else "Fraction"
        return Num(Fraction(value), py=py, text=text)
    if isinstance(value, float | Decimal):
        finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
        if not finite:
            raise UntraceableProgramError(f"value {value!r} is not finite")
        spelled = repr(value) if isinstance(value, float) else str(value)
        exact = is_double(Fraction(spelled))
        if not _NUMBER_TEXT.fullmatch(spelled):
            # 1e-05 style: keep the exact value, drop the spelling.
            return Num(Fraction(spelled), py="float", exact=exact)
        decimal = spelled if _DECIMAL_TEXT.fullmatch(spelled) else None
        return Num(Fraction(spelled), py="float", exact=exact, text=decimal)
    if isinstance(value, str) and _STRING_NUMBER.fullmatch(value.strip()):
        # "a/b" is how records store Fraction variables (the sandbox decodes them back).
        spelled = value.strip()
        try:
            exact_value = Fraction(spelled)
        except ZeroDivisionError:
            raise UntraceableProgramError(f"value {value!r} divides by zero") from None
        if "/" in spelled:
            return Num(exact_value, py="Fraction")
        if "." not in spelled:
            return Num(exact_value, py="int")
        return Num(exact_value, py="float", exact=is_double(exact_value), text=spelled)
    raise UntraceableProgramError(f"value {value!r} is not a number")


def variable(name: str, value: Any) -> Var:
    """The leaf for argument `name` holding `value` (a Python number or a numeric string)."""
    leaf = number(value)
    return Var(leaf.value, py=leaf.py, exact=leaf.exact, name=name, text=leaf.text)


def value_domain(value: Fraction) -> Domain:
    """The type a given quantity is declared in: ℕ for counts, ℤ below zero, ℚ otherwise."""
    if value.denominator != 1:
        return "ℚ"
    return "ℕ" if value >= 0 else "ℤ"


def variables(expr: Expr) -> list[Var]:
    """The variables of the term, each once, in order of first appearance."""
    seen: dict[str, Var] = {}
    for node in walk(expr):
        if isinstance(node, Var) and node.name not in seen:
            seen[node.name] = node
    return list(seen.values())


def choose_domain(expr: Expr) -> Domain:
    """The smallest of ℕ ⊂ ℤ ⊂ ℚ in which the term means what the Python program computed."""
    nodes = list(walk(expr))
    if not all(n.value.denominator == 1 for n in nodes):
        return "ℚ"
    if any(isinstance(n, Neg) or (isinstance(n, Call) and n.fn == "abs") for n in nodes):
        return "ℤ"
    return "ℕ" if all(n.value >= 0 for n in nodes) else "ℤ"


def render(expr: Expr, domain: Domain, *, closed: bool = False) -> str:
    """Lean source for the term in `domain`; raises UntraceableProgramError for operations
    that have no faithful counterpart there (see module docstring). With `closed`, variables
    are written as their values."""
    return _Renderer(domain, closed).expr(expr, 0)


def fixes_type(expr: Expr) -> bool:
    """Whether the term's top-level arithmetic has a variable leaf, which fixes the type Lean
    elaborates its literals (and the other side of an equation) in."""
    return _group_has_var(expr)


def bare_number(value: Fraction, text: str | None = None) -> str:
    """A literal without ascription, for a place whose type is already fixed: `80`, `-5`,
    `0.05` (when `text` spells that decimal), `3 / 4`. A whole value is written whole even
    when `text` says `5.0`: its binder is ℕ or ℤ, which have no decimal literals."""
    if value.denominator == 1:
        return str(value.numerator)
    if text is not None and _DECIMAL_TEXT.fullmatch(text) and Fraction(text) == value:
        return text
    return f"{value.numerator} / {value.denominator}"


_GROUP_OPS = frozenset(("+", "-", "*", "/", "//", "%"))


def _in_group(expr: Expr) -> bool:
    return isinstance(expr, BinOp) and expr.op in _GROUP_OPS


def _group_has_var(expr: Expr) -> bool:
    """A Var among the leaves of the arithmetic tree rooted at `expr` (+ - * / // %; negation,
    calls and powers bound it: Lean elaborates their arguments on their own)."""
    if isinstance(expr, Var):
        return True
    if _in_group(expr):
        assert isinstance(expr, BinOp)
        return _group_has_var(expr.left) or _group_has_var(expr.right)
    return False


def lean_number(value: Fraction, domain: Domain, text: str | None = None) -> str:
    """`(44 : ℕ)`, `(-3 : ℤ)`, `(0.75 : ℚ)` (when `text` spells a decimal), `(3 / 4 : ℚ)`."""
    if domain != "ℚ" and value.denominator != 1:
        raise UntraceableProgramError(f"{value} is not a whole number in {domain}")
    if domain == "ℚ" and text is not None and _DECIMAL_TEXT.fullmatch(text):
        return f"({text} : ℚ)"
    if value.denominator == 1:
        return f"({value.numerator} : {domain})"
    return f"({value.numerator} / {value.denominator} : ℚ)"


class _Renderer:
    """Renders one term; `typed` says whether the arithmetic tree being rendered has a
    variable leaf, so that its literals need no ascription."""

    def __init__(self, domain: Domain, closed: bool) -> None:
        self.domain = domain
        self.closed = closed

    def expr(self, expr: Expr, parent: int, typed: bool | None = None) -> str:
        if typed is None:
            typed = not self.closed and _group_has_var(expr)
        domain = self.domain
        if isinstance(expr, Var) and not self.closed:
            name = lean_name(expr.name)
            return name if value_domain(expr.value) == domain else f"({name} : {domain})"
        if isinstance(expr, Num | Var):
            if typed and expr.value >= 0:
                text = bare_number(expr.value, expr.text)
                return f"({text})" if "/" in text and parent > 0 else text
            return lean_number(expr.value, domain, expr.text)
        if isinstance(expr, Neg):
            if domain == "ℕ":
                raise UntraceableProgramError("negation has no meaning in ℕ")
            return f"(-{self.expr(expr.operand, 100)})"
        if isinstance(expr, Call):
            if expr.fn == "abs":
                return f"|{self.expr(expr.args[0], 0)}|"
            text = self.expr(expr.args[0], 100)
            for arg in expr.args[1:]:
                text = f"({expr.fn} {text} {self.expr(arg, 100)})"
            return text
        if isinstance(expr, BinOp):
            return self._binop(expr, parent, typed)
        raise UntraceableProgramError(f"cannot render {type(expr).__name__}")

    def _binop(self, expr: BinOp, parent: int, typed: bool) -> str:
        op = expr.op
        domain = self.domain
        prec = _PRECEDENCE[op]
        if op in ("//", "%"):
            if domain == "ℚ":
                raise UntraceableProgramError(f"'{op}' on non-integral values has no ℚ counterpart")
            if domain == "ℤ" and expr.right.value <= 0:
                raise UntraceableProgramError(
                    f"'{op}' by a non-positive divisor rounds differently in Lean's ℤ"
                )
        if op == "**":
            base = self.expr(expr.left, prec + 1)
            text = f"{base} ^ {self._exponent(expr.right)}"
        else:
            lean_op = "/" if op == "//" else op
            left = self.expr(expr.left, prec, self._shared(expr.left, typed))
            right = self.expr(expr.right, prec + 1, self._shared(expr.right, typed))
            text = f"{left} {lean_op} {right}"
        return f"({text})" if prec < parent else text

    @staticmethod
    def _shared(child: Expr, typed: bool) -> bool | None:
        """Operands inside the same arithmetic tree (and its leaves) share its type; negation,
        calls and powers start a tree of their own (None: decided there)."""
        return typed if _in_group(child) or isinstance(child, Num | Var) else None

    def _exponent(self, expr: Expr) -> str:
        nodes = list(walk(expr))
        if not all(n.value.denominator == 1 and n.value >= 0 for n in nodes):
            raise UntraceableProgramError("exponent is not a natural number")
        return _Renderer("ℕ", self.closed).expr(expr, 100)


# Lean 4 keywords a Python name can spell; such a binder is written «name».
_LEAN_KEYWORDS = frozenset(
    (  # noqa: SIM905 - a word list reads better as one string
        "at by do else end fun have if in let match then with from show open import theorem"
        " lemma def example where instance class structure inductive namespace section variable"
        " universe mutual deriving calc suffices obtain using only this axiom noncomputable"
        " private protected partial unsafe macro syntax attribute local scoped export renaming"
        " hiding infix infixl infixr notation prefix postfix nomatch nofun termination_by"
        " decreasing_by Type Prop Sort set_option omit include opaque abbrev"
    ).split()
)
# Names the rendered terms use for functions: a binder of that name would shadow them.
_TERM_FUNCTIONS = frozenset(("min", "max", "abs"))


def lean_name(name: str) -> str:
    """A Lean identifier for a Python argument name: as is when it is a plain ASCII name,
    `min'` for the functions terms call, «name» for keywords and anything else."""
    if name in _TERM_FUNCTIONS:
        return f"{name}'"
    if name.isascii() and name.isidentifier() and name != "_" and name not in _LEAN_KEYWORDS:
        return name
    return f"«{name}»"


def python_value(expr: Expr) -> int | float | Fraction:
    """The value Python computes for the term: the exact value in the node's type where
    `exact`, else the node's float arithmetic replayed on its operands' Python values (the
    same correctly rounded operations, in the same order, as the program ran)."""
    if expr.exact or isinstance(expr, Num | Var):
        if expr.py == "int":
            return int(expr.value)
        return float(expr.value) if expr.py == "float" else expr.value
    result: Any
    if isinstance(expr, BinOp):
        left, right = python_value(expr.left), python_value(expr.right)
        try:
            result = _PY_FUNCS[expr.op](left, right)
        except (ZeroDivisionError, OverflowError):
            raise UntraceableProgramError(f"float arithmetic fails on {expr.value}") from None
    elif isinstance(expr, Neg):
        result = -python_value(expr.operand)
    elif isinstance(expr, Call):
        values = [python_value(a) for a in expr.args]
        result = abs(values[0]) if expr.fn == "abs" else (min if expr.fn == "min" else max)(values)
    else:
        raise UntraceableProgramError(f"cannot replay {type(expr).__name__}")
    # float() of an int or Fraction subterm is the correctly rounded conversion.
    return float(result) if expr.py == "float" else result


def walk(expr: Expr) -> Iterator[Expr]:
    yield expr
    if isinstance(expr, BinOp):
        yield from walk(expr.left)
        yield from walk(expr.right)
    elif isinstance(expr, Neg):
        yield from walk(expr.operand)
    elif isinstance(expr, Call):
        for arg in expr.args:
            yield from walk(arg)


def is_double(value: Fraction) -> bool:
    """Whether a binary64 float holds exactly this value."""
    try:
        return Fraction(float(value)) == value
    except OverflowError:
        return False
