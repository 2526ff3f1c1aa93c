"""How numbers are written into question and solution text, and how answers are rendered.

One place for this so that a question, its solution and its `answer` column always agree on
how a value looks (no "12.0" in the text and "12" in the answer).
"""

from __future__ import annotations

import math
import string
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal

AnswerType = Literal["int", "decimal", "fraction"]

# Values closer than this to a whole number (or to a 2-place decimal) are treated as exact:
# programs compute in floats, and 0.1 * 3 must still count as 0.3.
_EPS = 1e-9


def is_whole(value: Any) -> bool:
    """True for ints, integral floats/Fractions/Decimals; False for bools, NaN, inf, other."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, Fraction):
        return value.denominator == 1
    if isinstance(value, (float, Decimal)):
        v = float(value)
        return math.isfinite(v) and abs(v - round(v)) < _EPS * max(1.0, abs(v))
    return False


def has_places(value: Any, places: int) -> bool:
    """True when `value` is a finite number with at most `places` decimal places."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction, Decimal)):
        return False
    scaled = Fraction(value) * 10**places if not isinstance(value, float) else value * 10**places
    return is_whole(scaled)


def format_number(value: Any, spec: str = "") -> str:
    """Render a value for text.

    Specs: "" (ints as digits, near-integral floats as ints, other floats with up to 2
    decimals, Fractions as a/b), "money" (always 2 decimals), or any standard format spec.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction, Decimal)):
        return format(value, spec)
    if spec == "money":
        return f"{float(value):.2f}"
    if spec:
        return format(float(value) if isinstance(value, Fraction) else value, spec)
    if is_whole(value):
        return str(int(round(float(value)))) if not isinstance(value, int) else str(value)
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return text


def format_answer(value: Any, answer_type: AnswerType) -> str | None:
    """Canonical answer string, or None when the value does not fit the answer type.

    "int" needs a whole number, "decimal" a number with at most 2 decimal places, "fraction"
    any exact rational (rendered a/b in lowest terms, or as an integer when whole).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction, Decimal)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if answer_type == "int":
        return str(int(round(float(value)))) if is_whole(value) else None
    if answer_type == "decimal":
        if not has_places(value, 2):
            return None
        return format_number(round(float(value), 2))
    frac = Fraction(value).limit_denominator(10**6) if isinstance(value, float) else Fraction(value)
    if frac.denominator == 1:
        return str(frac.numerator)
    return f"{frac.numerator}/{frac.denominator}"


class NumberFormatter(string.Formatter):
    """str.format with `format_number` for numeric fields; `{x:money}` for 2 decimals."""

    def format_field(self, value: Any, format_spec: str) -> str:
        return format_number(value, format_spec)


_Part = tuple[str, str | None, str]


@lru_cache(maxsize=4096)
def _compile(template: str) -> tuple[_Part, ...] | None:
    """(literal, field name, format spec) parts, or None when a field needs the full
    str.format machinery (attribute/index access, conversions, nested specs)."""
    parts: list[_Part] = []
    for literal, name, spec, conversion in string.Formatter().parse(template):
        if name is not None and (conversion or not name.isidentifier() or (spec and "{" in spec)):
            return None
        parts.append((literal, name, spec or ""))
    return tuple(parts)


def fill(template: str, values: dict[str, Any]) -> str:
    """Fill `{slot}` fields. A missing slot raises KeyError naming it.

    Templates are parsed once and cached: filling is on the hot path of every variant.
    """
    parts = _compile(template)
    if parts is None:
        return NumberFormatter().vformat(template, (), values)
    out: list[str] = []
    for literal, name, spec in parts:
        out.append(literal)
        if name is not None:
            out.append(format_number(values[name], spec))
    return "".join(out)


def template_slots(template: str) -> set[str]:
    """Names of the `{slot}` fields a template uses."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}
