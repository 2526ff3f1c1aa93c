"""What keeps an injected error subtle: the rules an edit must pass, and why it was dropped.

An error a reader spots at once ("0.05 cups", 388,800 dollars of interest on a 21,600-dollar
loan, "-3 apples") teaches a model nothing about subtle mistakes, so every value an edit
changes (the edited operand, the edited step's result, each value carried into later steps,
the final answer) must pass `check_change`:

- `negative`: a quantity that was >= 0 stays >= 0; `zero`: one that was not 0 does not become 0;
- `magnitude`: the new value is within a factor of `MAX_FACTOR` of the old one;
- `not_whole` / `format_changed` (`generators.rise.formatting`): written like the old number.

Units are never rewritten (edits change numbers and operators only), and an edit that would
change what a quantity measures is dropped as `unit_changed`: a substituted value must be of
the same kind as the one it replaces, swapped terms must share their unit, and a deleted term
that carries a unit must be a summand (leaving out a factor with a unit changes the unit of
the result). A quantity's kind is the word written after it ("15 dollars", "3 boxes", "$80"),
in the question or in the solution; a value never written with a unit is compatible with any.

Every rule raises `Dropped(reason, detail)`; the stage counts the reasons (`dropped:<reason>`
in its stats) and names them in its rejection when no edit of a problem survives.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from fractions import Fraction

from mathsynth.generators.rise.steps import find_numbers
from mathsynth.numbers import parse_number_or_none

# A changed value stays within this factor of the original (both ways): doubling or halving,
# an off-by-one or a swapped operator pass, a value a hundred times too large does not.
MAX_FACTOR = 5

# Words after a number that say nothing about what it counts ("30 more pages").
_FILLERS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "and",
        "or",
        "more",
        "less",
        "fewer",
        "extra",
        "additional",
        "other",
        "another",
        "each",
        "per",
        "every",
        "in",
        "on",
        "at",
        "to",
        "for",
        "with",
        "by",
        "from",
        "times",
        "than",
        "as",
        "is",
        "are",
        "was",
        "were",
    ]
)
_WORD_AFTER = re.compile(r"\s+([A-Za-z][A-Za-z'/-]*)")


class Dropped(Exception):  # noqa: N818 - control flow, not an error: an edit is dropped
    """An edit or a candidate value fails one of the rules; `reason` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def check_change(old: Fraction, new: Fraction, what: str = "value") -> None:
    """Raise Dropped unless `old` -> `new` is a believable slip (see module docstring)."""
    if new == old:
        return
    if old >= 0 > new:
        raise Dropped("negative", f"{what} {_show(old)} would become {_show(new)}")
    if old != 0 and new == 0:
        raise Dropped("zero", f"{what} {_show(old)} would become 0")
    if old == 0 or not (Fraction(1, MAX_FACTOR) <= abs(new) / abs(old) <= MAX_FACTOR):
        raise Dropped(
            "magnitude",
            f"{what} {_show(old)} would become {_show(new)} (more than {MAX_FACTOR}x off)",
        )


def normalize_unit(word: str) -> str:
    """'Dollars' -> 'dollar', 'boxes' -> 'box', 'pieces/house' -> 'piece/house'."""
    word = word.lower().strip("'")
    head, slash, rest = word.partition("/")
    for suffix, keep in (("ies", "y"), ("ches", "ch"), ("shes", "sh"), ("xes", "x"), ("s", "")):
        if head.endswith(suffix) and len(head) > len(suffix) + 1 and not head.endswith("ss"):
            head = head[: -len(suffix)] + keep
            break
    return head + slash + rest


def unit_after(text: str, end: int) -> str | None:
    """The unit word written right after the number ending at `end` ("15 dollars", "3 boxes
    of 12 pens" -> "box"), skipping up to two fillers; None when no word follows."""
    pos = end
    for _ in range(3):
        match = _WORD_AFTER.match(text, pos)
        if match is None:
            return None
        word = match.group(1).lower()
        if word not in _FILLERS:
            return normalize_unit(word)
        pos = match.end()
    return None


class UnitIndex:
    """The unit words each value is written with in a problem's question and solution."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.units: dict[Fraction, set[str]] = defaultdict(set)
        for text in texts:
            for token in find_numbers(text):
                value = parse_number_or_none(token.text)
                if value is None:
                    continue
                if token.text.lstrip("-").startswith("$"):
                    self.units[value].add("dollar")
                unit = unit_after(text, token.end)
                if unit is not None:
                    self.units[value].add(unit)

    def of(self, value: Fraction, written: str | None = None) -> set[str]:
        """Units of `value`; `written` is a unit written next to it in the step itself."""
        if written is not None:
            return {normalize_unit(written.split()[0])}
        return set(self.units.get(value, ()))


def same_kind(a: set[str], b: set[str]) -> bool:
    """Compatible units: either is unknown, or they share a word."""
    return not a or not b or bool(a & b)


def _show(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"
