"""GSM8K calculator annotations (`<<48/2=24>>`): found, parsed, added, removed.

An annotation is trusted only as far as it evaluates (`generators.common.arithmetic`): its
expression is parsed and evaluated exactly, so the claimed value can be compared without
float noise. Seed readers, InfinityMATH's offline decoupler and RISE (which must strip them:
left in a rejected solution they would leak the right value) all read them here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from mathsynth.generators.common.arithmetic import (
    Expr,
    ExpressionError,
    evaluate,
    parse_expression,
)
from mathsynth.numbers import parse_number

# The value a GSM8K writer echoes after the annotation ("<<48/2=24>>24") is part of the match
# so that a rewritten step replaces both.
ANNOTATION_RE = re.compile(r"<<(?P<body>[^<>]*)>>")
FINAL_ANSWER_RE = re.compile(r"^\s*####\s*(?P<answer>.*?)\s*$", re.MULTILINE)
_AFTER_EQUALS = re.compile(r"=\s*\$?\s*$")


class AnnotationError(ExpressionError):
    """An annotation that cannot be parsed or evaluated (the message says why)."""


@dataclass(frozen=True, slots=True)
class Annotation:
    """One `<<expr=value>>` with its position in the solution text."""

    expr: Expr
    claimed: Fraction
    source: str
    start: int
    end: int


def parse_annotation(body: str, start: int = 0, end: int = 0) -> Annotation:
    """Parse the inside of `<<...>>`: "expr=value".

    Failure modes: AnnotationError when there is no "=", either side does not parse, or the
    expression does not evaluate (division by zero).
    """
    if "=" not in body:
        raise AnnotationError(f"no '=' in annotation <<{body}>>")
    lhs, _, rhs = body.rpartition("=")
    try:
        expr = parse_expression(lhs)
        evaluate(expr)
    except ExpressionError as exc:
        raise AnnotationError(f"<<{body}>>: {exc}") from None
    try:
        claimed = parse_number(rhs.strip())
    except ValueError:
        raise AnnotationError(f"result {rhs.strip()!r} of <<{body}>> is not a number") from None
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
    except ExpressionError:
        return m.group(0)
    return f"{m['lhs']} = {m['dollar']}<<{expr.replace(' ', '')}={rhs}>>{m['rhs']}"


def remove_calculator_annotations(text: str) -> str:
    """Turn GSM8K calculator annotations into plain step text.

    `48/2 = <<48/2=24>>24` becomes `48/2 = 24`; an annotation with no written expression before
    it (`He has <<5*3=15>>15 apples`) becomes `He has 5*3 = 15 apples`, so the step keeps its
    equation. Annotations must go: left in a rejected solution they would leak the right value.
    """

    def plain(match: re.Match[str]) -> str:
        if "=" not in match.group("body"):
            return match.group(0)
        if _AFTER_EQUALS.search(match.string, 0, match.start()):
            return ""
        return f"{match.group('body').rpartition('=')[0].strip()} = "

    return ANNOTATION_RE.sub(plain, text)
