"""The fast path: answers that are plain numbers, compared exactly with Fraction arithmetic.

Recognised forms (after `normalize.answer_core`): integers and decimals with an optional sign,
thousands separators (`1,234`, `1{,}234`, `1\\,234` – groups of exactly three digits only, so
`1,5` and `1, 2` are left to math-verify), `a/b`, `\\frac{a}{b}`, `\\frac12`, a money sign
(`$1,234.50`, `\\$5`), a percent sign (`25%`, `25\\%`, `25 percent`), degrees (`30^\\circ`, `30°`)
and trailing unit words (`12 apples`, `5 \\text{cm}`).

Verdict rules (documented choices):
- numbers compare exactly: `0.75 == 3/4`, but `1/3 != 0.333` and `1/3 != 0.333333`
  (a rounded decimal is not the fraction; math-verify would round to 6 places and accept);
- units and money signs are ignored: the checked quantity is the number (`12 apples == 12`);
- a percent `x%` on one side equals `x` or `x/100` on the other (`25% == 25 == 0.25`): answers
  to "what percent" questions are written both ways; two percents compare as numbers.
Anything else (expressions, lists, multiplier words such as `5 million`) returns None from
`exact_verdict` and goes to math-verify.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

_DIGITS = r"(?:\d{1,3}(?:,\d{3})+|\d+)"
_DECIMAL = rf"(?:{_DIGITS}(?:\.\d*)?|\.\d+)"
_NUMBER = re.compile(
    rf"""^(?P<sign>[-+]?)\s*(?:\\\$|\$)?\s*(?:
        (?P<frac>\\frac(?:\{{\s*(?P<fn>\d+)\s*\}}|(?P<fn1>\d))(?:\{{\s*(?P<fd>\d+)\s*\}}|(?P<fd1>\d)))
      | (?P<num>\d+)\s*/\s*(?P<den>\d+)
      | (?P<dec>{_DECIMAL})
    )$""",
    re.VERBOSE,
)
_PERCENT = re.compile(r"\s*(?:\\%|%|\bpercent\b|\bpct\b)\s*$")
_DEGREES = re.compile(r"\s*(?:\^\s*\{?\s*\\circ\s*\}?|°|\\degree)\s*$")
_UNIT_TAIL = re.compile(
    r"\s*(?:\\(?:text|mathrm|mbox)\{\s*(?P<t>[A-Za-z][A-Za-z .]*)\}|(?P<w>[A-Za-z]{2,}\.?))\s*$"
)
# Words that change the value or are mathematics, never units.
_NOT_UNITS = frozenset(
    """pi i e sqrt ln log lg exp sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh
    infty infinity inf million millions billion billions thousand thousands hundred hundreds
    dozen dozens half halves third thirds quarter quarters times percent pct and or to of
    frac cdot div pm mp le ge leq geq neq ne""".split()  # noqa: SIM905 (a word list reads best)
)
_LATEX_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|\\,)(?=\d{3})")


@dataclass(frozen=True, slots=True)
class ExactNumber:
    """A plain number read exactly from an answer string."""

    value: Fraction
    percent: bool = False


def _strip_units(s: str) -> str | None:
    """Remove trailing unit words; None if a trailing word is not a unit (e.g. `million`)."""
    for _ in range(4):
        m = _UNIT_TAIL.search(s)
        if m is None or m.start() == 0:
            return s
        words = (m.group("t") or m.group("w") or "").lower().replace(".", " ").split()
        if any(w in _NOT_UNITS for w in words):
            return None
        s = s[: m.start()]
    return s


def read_number(text: str) -> ExactNumber | None:
    """Parse a cleaned answer as an exact number; None when it is anything else."""
    s = _LATEX_THOUSANDS.sub("", text.strip())
    percent = False
    m = _PERCENT.search(s)
    if m is not None:
        s, percent = s[: m.start()], True
    else:
        m = _DEGREES.search(s)
        if m is not None:
            s = s[: m.start()]
        else:
            stripped = _strip_units(s)
            if stripped is None:
                return None
            s = stripped
            m = _PERCENT.search(s)
            if m is not None:
                s, percent = s[: m.start()], True
    m = _NUMBER.match(s.strip())
    if m is None:
        return None
    if m.group("frac"):
        num, den = m.group("fn") or m.group("fn1"), m.group("fd") or m.group("fd1")
    elif m.group("num"):
        num, den = m.group("num"), m.group("den")
    else:
        num, den = m.group("dec").replace(",", ""), "1"
    if int(den) == 0:
        return None
    value = Fraction(num) / Fraction(den)
    return ExactNumber(-value if m.group("sign") == "-" else value, percent)


def compare_numbers(gold: ExactNumber, pred: ExactNumber) -> bool:
    """Exact equality with the percent rule from the module docstring."""
    if gold.percent == pred.percent:
        return gold.value == pred.value
    pct, plain = (gold, pred) if gold.percent else (pred, gold)
    return plain.value in (pct.value, pct.value / 100)


def format_fraction(value: Fraction) -> str:
    """Short exact rendering for verdict details."""
    text = str(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
