"""GSM8K calculator annotations (`<<48/2=24>>`) parsed into exact arithmetic expressions.

An annotation is trusted only as far as it evaluates: its expression is parsed with `ast`
(numbers, + - * /, parentheses, unary minus; nothing else) and evaluated with Fractions, so
"0.1*3" is exactly 3/10 and the claimed value can be compared without float noise.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

# The value a GSM8K writer echoes after the annotation ("<<48/2=24>>24") is part of the match
# so that a rewritten step replaces both.
ANNOTATION_RE = re.compile(r"<<(?P<body>[^<>]*)>>")
FINAL_ANSWER_RE = re.compile(r"^\s*####\s*(?P<answer>.*?)\s*$", re.MULTILINE)

_BINOPS: dict[type[ast.operator], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
}


class AnnotationError(ValueError):
    """An annotation that cannot be parsed or evaluated (the message says why)."""


@dataclass(frozen=True, slots=True)
class Num:
    """A number literal as written in the annotation."""

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
    """A reference to a variable or an earlier step (only in decoupled programs)."""

    name: str


Expr = Num | BinOp | Neg | Name


@dataclass(frozen=True, slots=True)
class Annotation:
    """One `<<expr=value>>` with its position in the solution text."""

    expr: Expr
    claimed: Fraction
    source: str
    start: int
    end: int


def parse_number(text: str) -> Fraction:
    """Exact value of a plain number literal ("1,200", ".5", "3.25")."""
    return Fraction(text.replace(",", ""))


def parse_expression(text: str) -> Expr:
    """Parse arithmetic text into an Expr.

    Failure modes: raises AnnotationError for empty text, syntax errors and anything that is
    not a number, + - * /, parentheses or unary minus (names, calls, powers).
    """
    text = text.strip()
    if not text:
        raise AnnotationError("empty expression")
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        raise AnnotationError(f"not an arithmetic expression: {text!r}") from None
    return _convert(tree.body, text)


def _convert(node: ast.AST, source: str) -> Expr:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        literal = ast.get_source_segment(source, node) or repr(node.value)
        return Num(parse_number(literal), literal)
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        return BinOp(
            _BINOPS[type(node.op)], _convert(node.left, source), _convert(node.right, source)
        )
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return Neg(_convert(node.operand, source))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
        return _convert(node.operand, source)
    raise AnnotationError(f"unsupported element in {source!r}")


def evaluate(expr: Expr, env: dict[str, Fraction] | None = None) -> Fraction:
    """Exact value of an expression; `env` gives the values of Names.

    Failure modes: AnnotationError on division by zero or an unknown name.
    """
    if isinstance(expr, Num):
        return expr.value
    if isinstance(expr, Name):
        if env is None or expr.name not in env:
            raise AnnotationError(f"unknown name {expr.name!r}")
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
        raise AnnotationError("division by zero")
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


def parse_annotation(body: str, start: int = 0, end: int = 0) -> Annotation:
    """Parse the inside of `<<...>>`: "expr=value".

    Failure modes: AnnotationError when there is no "=", either side does not parse, or the
    expression does not evaluate (division by zero).
    """
    if "=" not in body:
        raise AnnotationError(f"no '=' in annotation <<{body}>>")
    lhs, _, rhs = body.rpartition("=")
    expr = parse_expression(lhs)
    try:
        claimed = parse_number(rhs.strip())
    except (ValueError, ZeroDivisionError):
        raise AnnotationError(f"result {rhs.strip()!r} of <<{body}>> is not a number") from None
    evaluate(expr)
    return Annotation(expr, claimed, body, start, end)


def find_annotations(text: str) -> list[Annotation]:
    """Every annotation in a solution text, in order.

    Failure modes: AnnotationError for the first annotation that does not parse or evaluate.
    """
    return [parse_annotation(m["body"], m.start(), m.end()) for m in ANNOTATION_RE.finditer(text)]


_NUMBER = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_PLAIN_EQUATION_RE = re.compile(
    rf"(?<![\w.,<=$])(?P<lhs>\$?{_NUMBER}(?:\s*[-+*/x×÷]\s*\$?{_NUMBER})+)"
    rf"\s*=\s*(?P<dollar>\$?)(?P<rhs>{_NUMBER})(?![\d<])"
)


def annotate_plain_equations(solution: str) -> str:
    """Add annotations to written-out calculations that lack one ("20/4 = $5" in the last line).

    GSM8K writers often leave the final, easiest step unannotated. A calculation is annotated
    only when it evaluates exactly to the written result; lines that already have an
    annotation are left alone so the two can never overlap.
    """
    out = []
    for line in solution.split("\n"):
        if "<<" not in line and not line.lstrip().startswith("####"):
            line = _PLAIN_EQUATION_RE.sub(_annotate, line)
        out.append(line)
    return "\n".join(out)


def _annotate(m: re.Match[str]) -> str:
    expr = re.sub(r"[x×]", "*", m["lhs"]).replace("÷", "/").replace("$", "").replace(",", "")
    rhs = m["rhs"].replace(",", "")
    try:
        if evaluate(parse_expression(expr)) != parse_number(rhs):
            return m.group(0)
    except AnnotationError:
        return m.group(0)
    return f"{m['lhs']} = {m['dollar']}<<{expr.replace(' ', '')}={rhs}>>{m['rhs']}"
