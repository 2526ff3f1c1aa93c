"""math-verify comparison, run inside a worker process (see `worker.py`).

math-verify's own signal-based timeouts are switched off (`parsing_timeout=None`,
`timeout_seconds=None`): SIGALRM only works on the main thread and cannot interrupt C-level
big-integer arithmetic, so the worker pool enforces the time limit by killing the process.

Corrections over plain `verify(parse(gold), parse(pred))`:
- a bare answer without delimiters is parsed as LaTeX math (`$...$`): the plain-expression
  extractor keeps only the last side of an equation, so `3x-y+13=0` and `3x+4y+14=0` both became
  `0` and compared equal (Math-Verify issue #60);
- when both sides are exact rational numbers the verdict is exact equality, because
  math-verify's absolute rounding calls tiny values equal (`1/2004!` vs `1/2006!`, issue #14)
  and accepts rounded decimals (`1/3` vs `0.333333`);
- when both sides are other real numbers, a "correct" from math-verify must also hold to a
  relative precision of 1e-6, so tiny irrational values are not equal by absolute rounding.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import sympy
from math_verify import ExprExtractionConfig, LatexExtractionConfig, parse, verify

from mathsynth.verifiers.answers.normalize import clean_latex, last_boxed

# The "timeout is disabled" warning is expected: the worker pool is the timeout.
logging.getLogger("math_verify").setLevel(logging.ERROR)

_CONFIGS = (LatexExtractionConfig(), ExprExtractionConfig())
_RELATIVE_TOLERANCE = sympy.Rational(1, 10**6)


def describe_exception(exc: BaseException) -> str:
    """One-line `Type: message`, safe for exceptions whose message holds a huge integer."""
    try:
        message = str(exc)
    except ValueError:  # int too large to convert to str
        message = "(message too large)"
    return f"{type(exc).__name__}: {message}"[:300]


def _has_math_markup(text: str) -> bool:
    return "$" in text or "\\(" in text or "\\[" in text or last_boxed(text) is not None


def parse_answer(text: str) -> list[Any]:
    """math-verify parse of one answer: bare answers as LaTeX math, marked-up text as-is."""
    cleaned = clean_latex(text)
    if not _has_math_markup(cleaned):
        parsed = parse(f"${cleaned}$", list(_CONFIGS), parsing_timeout=None)
        if parsed:
            return parsed
    return parse(cleaned, list(_CONFIGS), parsing_timeout=None)


@lru_cache(maxsize=4096)
def parse_gold(gold: str) -> tuple[Any, ...]:
    """Gold answers repeat across many predictions: parse each one once per worker."""
    return tuple(parse_answer(gold))


def _first_expr(parsed: tuple[Any, ...] | list[Any]) -> sympy.Basic | None:
    return next((p for p in parsed if isinstance(p, sympy.Basic)), None)


def _as_rational(expr: sympy.Basic) -> sympy.Rational | None:
    """The exact rational value of a number expression, or None if it is not one."""
    if isinstance(expr, sympy.Rational):
        return expr
    if isinstance(expr, sympy.Float):
        # math-verify builds Floats from the decimal text; its repr gives the digits back.
        return sympy.Rational(str(expr))
    if isinstance(expr, sympy.Expr) and expr.is_number and expr.is_rational:
        value = expr.doit()
        return value if isinstance(value, sympy.Rational) else None
    return None


def _is_real_number(expr: sympy.Basic | None) -> bool:
    return isinstance(expr, sympy.Expr) and bool(expr.is_number) and expr.is_real is True


def compare(gold: str, pred: str) -> tuple[str, str]:
    """(verdict, detail) for one pair. Exceptions from math-verify become `error` verdicts.

    Failure modes: may run without bound on pathological input (exponent towers, huge
    factorials); the caller must run it in a killable process.
    """
    gold_parsed = parse_gold(gold)
    if not gold_parsed:
        return "error", "gold answer could not be parsed"
    pred_parsed = parse_answer(pred)
    if not pred_parsed:
        return "incorrect", "no answer found in prediction"
    g, p = _first_expr(gold_parsed), _first_expr(pred_parsed)
    if _is_real_number(g) and _is_real_number(p):
        gq, pq = _as_rational(g), _as_rational(p)
        if gq is not None and pq is not None:
            if gq == pq:
                return "correct", "exact rational match"
            return "incorrect", "exact rational mismatch"
    try:
        same = verify(list(gold_parsed), pred_parsed, timeout_seconds=None, raise_on_error=True)
    except Exception as exc:  # math-verify raises anything sympy raises
        return "error", f"math-verify failed: {describe_exception(exc)}"
    if not same:
        return "incorrect", "math-verify: not equivalent"
    if _is_real_number(g) and _is_real_number(p):
        gv, pv = sympy.N(g, 30), sympy.N(p, 30)
        scale = max(abs(gv), abs(pv))
        if scale != 0 and abs(gv - pv) > _RELATIVE_TOLERANCE * scale:
            return "incorrect", "numbers differ beyond 1e-6 relative precision"
    return "correct", "math-verify: equivalent"
