"""Exact arithmetic over written expressions: the one evaluator every stage uses.

An expression ("48/2", "(3 + 4) * 2", "pct / 100 * price") is parsed with `ast` into a small
tree (numbers, names, + - * /, parentheses, unary minus; nothing else) and evaluated with
Fractions, so "0.1*3" is exactly 3/10 and a claimed value can be compared without float noise.
GSM8K calculator annotations, RISE's solution steps, decoupled programs and the answer checks
all evaluate through `evaluate`.
"""

from __future__ import annotations

import ast
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction

from mathsynth import pysource
from mathsynth.numbers import parse_number

_BINOPS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
}


class ExpressionError(ValueError):
    """Text that is not an arithmetic expression over numbers, or that does not evaluate
    (an unknown name, a division by zero); the message says which."""


class ExpressionDivisionError(ExpressionError, ZeroDivisionError):
    """An expression divides by zero (also a ZeroDivisionError, for arithmetic callers)."""


@dataclass(frozen=True, slots=True)
class Num:
    """A number literal as written."""

    value: Fraction
    text: str


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr


@dataclass(frozen=True, slots=True)
class Name:
    """A reference to a variable, an earlier step or a token placeholder."""

    name: str


Expr = Num | BinOp | Neg | Name


def parse_expression(text: str, *, names: bool = False) -> Expr:
    """Parse arithmetic text into an Expr; with `names`, identifiers become Name leaves.

    Failure modes: raises ExpressionError for empty text, syntax errors and anything that is
    not a number, + - * /, parentheses or unary minus (calls, powers; names unless allowed).
    """
    return _parse(text.strip(), names)


# Expr trees are immutable, so one parse serves every caller: RISE evaluates the same step
# shapes (numbers as placeholders) for every candidate edit, and `ast.parse` runs under the
# process-wide lock (mathsynth.pysource), where the build's threads would queue.
@functools.lru_cache(maxsize=1 << 16)
def _parse(text: str, names: bool) -> Expr:
    if not text:
        raise ExpressionError("empty expression")
    try:
        tree = pysource.parse(text, mode="eval")
    except SyntaxError:
        raise ExpressionError(f"not an arithmetic expression: {text!r}") from None
    return _convert(tree.body, text, names)


def _convert(node: ast.AST, source: str, names: bool) -> Expr:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        literal = ast.get_source_segment(source, node) or repr(node.value)
        return Num(parse_number(literal), literal)
    if names and isinstance(node, ast.Name):
        return Name(node.id)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return BinOp(
            _BINOPS[type(node.op)],
            _convert(node.left, source, names),
            _convert(node.right, source, names),
        )
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return Neg(_convert(node.operand, source, names))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        return _convert(node.operand, source, names)
    raise ExpressionError(f"unsupported element in {source!r}")


def evaluate(expr: Expr, env: Mapping[str, Fraction] | None = None) -> Fraction:
    """Exact value of an expression; `env` gives the values of Names.

    Failure modes: ExpressionError for an unknown name, ExpressionDivisionError (also a
    ZeroDivisionError) for a division by zero.
    """
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Name):
        if env is None or expr.name not in env:
            raise ExpressionError(f"unknown name {expr.name!r}")
        return env[expr.name]
    if isinstance(expr, Neg):
        return -evaluate(expr.operand, env)
    left, right = evaluate(expr.left, env), evaluate(expr.right, env)
    if expr.op == "+":
        return left + right
    if expr.op == "-":
        return left - right
    if expr.op == "*":
        return left * right
    if right == 0:
        raise ExpressionDivisionError("division by zero")
    return left / right


def literals(expr: Expr) -> list[Num]:
    """Number literals in left-to-right order."""
    if isinstance(expr, Num):
        return [expr]
    if isinstance(expr, Name):
        return []
    if isinstance(expr, Neg):
        return literals(expr.operand)
    return [*literals(expr.left), *literals(expr.right)]


def operators(expr: Expr) -> set[str]:
    if isinstance(expr, BinOp):
        return {expr.op} | operators(expr.left) | operators(expr.right)
    if isinstance(expr, Neg):
        return operators(expr.operand)
    return set()


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def render(expr: Expr, leaf: Callable[[Num | Name], str]) -> str:
    """Infix text with the minimum parentheses; `leaf(node)` renders Num and Name nodes.

    A leaf may render to a compound expression ("pct / 100"); callers wrap such leaves in
    parentheses themselves, so precedence here only concerns the tree's own operators.
    """
    if isinstance(expr, (Num, Name)):
        return leaf(expr)
    if isinstance(expr, Neg):
        inner = render(expr.operand, leaf)
        return f"-{inner}" if isinstance(expr.operand, (Num, Name)) else f"-({inner})"
    prec = _PRECEDENCE[expr.op]
    left = render(expr.left, leaf)
    right = render(expr.right, leaf)
    if isinstance(expr.left, BinOp) and _PRECEDENCE[expr.left.op] < prec:
        left = f"({left})"
    # The right operand needs parentheses at equal precedence too: a - (b - c), a / (b * c).
    if isinstance(expr.right, BinOp) and (
        _PRECEDENCE[expr.right.op] < prec
        or (_PRECEDENCE[expr.right.op] == prec and expr.op in "-/")
    ):
        right = f"({right})"
    if isinstance(expr.right, Neg):
        right = f"({right})"
    return f"{left} {expr.op} {right}"
