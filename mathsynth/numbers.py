"""Numbers: the one parser for numbers written in text, and how values are rendered.

One place for this so that a question, its solution and its `answer` column always agree on
how a value looks (no "12.0" in the text and "12" in the answer), and so that every stage that
reads a number back (re-execution, RISE recomputation, decoupling, formalization, the answer
checker) reads it the same way.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache
from typing import Any, Literal

# One format per answer type, the same in the solution text, `answer` and `messages`:
#   int       whole number, digits only ("1234", "-5")
#   decimal   at most 2 decimal places, trailing zeros dropped ("12.5", "3")
#   money     always 2 decimal places ("749.00", "12.50"); text writes "$749.00"
#   fraction  lowest terms "a/b", or an integer when whole ("3/4", "-7/2", "5")
#   exact     LaTeX as `sympy.latex` writes the value ("\\frac{3}{4}", "2 \\sqrt{3}", "4 \\pi")
AnswerType = Literal["int", "decimal", "money", "fraction", "exact"]
ANSWER_TYPES: tuple[str, ...] = ("int", "decimal", "money", "fraction", "exact")

# A number as people write it: sign, money sign, thousands commas (groups of three), decimals,
# a fraction a/b, a percent sign.
_NUMBER = re.compile(
    r"(?P<sign>[-+]?)\$?(?P<body>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d*)?|\.\d+)"
    r"(?:/(?P<den>\d+))?(?P<percent>%?)"
)


@lru_cache(maxsize=65536)
def parse_number(text: str) -> Fraction:
    """Exact value of a number as written: "42", "-3.5", ".5", "1,200", "$1,200.50", "3/4",
    "-7/2", "25%" (= 1/4). Surrounding spaces are ignored.

    Failure modes: ValueError for anything else (units, words, LaTeX, "1,5", a zero
    denominator). Cached: stages re-read the same few numbers many times.
    """
    match = _NUMBER.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a number: {text!r}")
    value = Fraction(match["body"].replace(",", ""))
    if match["den"] is not None:
        if int(match["den"]) == 0:
            raise ValueError(f"zero denominator: {text!r}")
        value /= int(match["den"])
    if match["percent"]:
        value /= 100
    return -value if match["sign"] == "-" else value


def parse_number_or_none(text: str) -> Fraction | None:
    """`parse_number`, with None where that raises ValueError."""
    try:
        return parse_number(text)
    except ValueError:
        return None


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

    Specs: "" (ints as digits, near-integral floats as ints, other floats with up to 6
    decimals, Fractions as a/b), "money" (always 2 decimals), "latex" (Fractions as
    \\frac{a}{b}, the rest as ""), or any standard format spec. Strings (LaTeX rendered in the
    sandbox) are returned as they are.
    """
    if isinstance(value, str) and spec in ("", "latex"):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction, Decimal)):
        return format(value, spec)
    if spec == "money":
        return f"{float(value):.2f}"
    if spec == "latex":
        if isinstance(value, Fraction) and value.denominator != 1:
            sign = "-" if value < 0 else ""
            return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"
        return format_number(value)
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

    "int" needs a whole number, "decimal" and "money" a number with at most 2 decimal places,
    "fraction" any exact rational (rendered a/b in lowest terms, or as an integer when whole),
    "exact" a LaTeX string rendered in the sandbox (`sympy.latex` of the program's value) or
    a rational number (rendered the way `sympy.latex` writes it).
    """
    if answer_type == "exact":
        return exact_latex(value)
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
    if answer_type == "money":
        return f"{float(value):.2f}" if has_places(value, 2) else None
    frac = Fraction(value).limit_denominator(10**6) if isinstance(value, float) else Fraction(value)
    if frac.denominator == 1:
        return str(frac.numerator)
    return f"{frac.numerator}/{frac.denominator}"


def exact_latex(value: Any) -> str | None:
    """The `exact` answer of a value: a LaTeX string as given (the sandbox renders sympy values
    with `sympy.latex`), an int or Fraction as `sympy.latex` would write it ("12",
    "\\frac{3}{4}", "- \\frac{7}{2}"); None for anything else (floats are not exact)."""
    if isinstance(value, str):
        text = value.strip()
        return text or None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        sign = "- " if value < 0 else ""
        return f"{sign}\\frac{{{abs(value.numerator)}}}{{{value.denominator}}}"
    return None


def answer_type_of(answer: str) -> str:
    """The answer type an `answer` string is written in (the inverse of `format_answer`, for
    reading rows back): int, money (exactly 2 decimals), decimal, fraction, or exact."""
    text = answer.strip()
    if re.fullmatch(r"-?\d+", text):
        return "int"
    if re.fullmatch(r"-?\d+\.\d\d", text):
        return "money"
    if re.fullmatch(r"-?\d+\.\d{1,6}", text):
        return "decimal"
    if re.fullmatch(r"-?\d+/\d+", text):
        return "fraction"
    return "exact"


def answer_fits_type(answer: str, answer_type: str) -> bool:
    """Whether `answer` is written the way `format_answer` writes its type: "13" is a valid
    decimal, fraction or exact answer (whole values are written as integers), "13.0" is
    none, "13.00" only money."""
    written = answer_type_of(answer)
    if answer_type == "exact":
        return bool(answer.strip())
    allowed = {
        "int": ("int",),
        "decimal": ("int", "decimal", "money") if not answer.endswith("0") else ("int",),
        "money": ("money",),
        "fraction": ("int", "fraction"),
    }.get(answer_type, ())
    return written in allowed
