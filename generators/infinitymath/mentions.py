"""Numbers as they appear in word-problem text: digits, money, percents and number words.

Each `Mention` knows its span, its value, how to write a new value in the same place (the
slot pattern) and which other literal values a solution may use for it: "20%" is 20 but a
step may write 0.2; "half" is 2 as a divisor ("48/2") but 0.5 as a factor ("48*0.5").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

MentionKind = Literal["number", "money", "percent", "cardinal", "multiplier", "part"]

# How a literal relates to the mention's value `v` when it is not `v` itself.
Relation = Literal["percent", "reciprocal"]

_NUMBER_RE = re.compile(
    r"(?P<dollar>\$\s?)?(?<![\w.,])(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?!\d)(?!(?:st|nd|rd|th)\b)(?P<pct>\s?%|\s+percent\b)?"
)

_UNITS = [
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"),
    *("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen"),
    *("eighteen", "nineteen"),
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_CARDINALS: dict[str, int] = {w: i for i, w in enumerate(_UNITS)}
_CARDINALS.update({w: 10 * (i + 2) for i, w in enumerate(_TENS)})
_CARDINALS.update({"a dozen": 12, "a hundred": 100, "a thousand": 1000})

_MULTIPLIERS = {"twice": 2, "double": 2, "thrice": 3, "triple": 3, "quadruple": 4}
_PARTS = {
    "half": 2,
    "one-half": 2,
    "one half": 2,
    "a third": 3,
    "one-third": 3,
    "one third": 3,
    "a quarter": 4,
    "one-quarter": 4,
    "one quarter": 4,
    "a fourth": 4,
    "one-fourth": 4,
    "one fourth": 4,
    "a fifth": 5,
    "one-fifth": 5,
    "one fifth": 5,
}


def _word_alternation(words: list[str]) -> str:
    # Longest first so "one-third" wins over "one", "twenty-five" over "twenty".
    return "|".join(
        re.escape(w).replace(r"\ ", r"\s+") for w in sorted(words, key=len, reverse=True)
    )


_COMPOUND = rf"(?:{'|'.join(_TENS)})[-\s](?:{'|'.join(_UNITS[1:10])})"
_WORD_RE = re.compile(
    rf"(?<![\w-])(?P<word>{_COMPOUND}|{_word_alternation([*_PARTS, *_MULTIPLIERS, *_CARDINALS])})"
    r"(?![\w-])",
    re.IGNORECASE,
)
# "one and a half", "half-hour", "a half dozen": half is part of a compound quantity there.
_NOT_A_PART = re.compile(r"and\s+a\s*$|-$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Mention:
    """One number in a text.

    `pattern` rewrites the span with `{slot}` standing for the variable (e.g. "{slot}%",
    "1/{slot}", "{slot:,}"); `relations` maps other literal values a solution may use for
    this mention to how they derive from the value.
    """

    start: int
    end: int
    text: str
    value: Fraction
    kind: MentionKind
    pattern: str = "{slot}"
    places: int = 0
    relations: dict[Fraction, Relation] = field(default_factory=dict)

    def matches(self, literal: Fraction) -> Relation | Literal["value"] | None:
        if literal == self.value:
            return "value"
        return self.relations.get(literal)

    def slot(self, name: str) -> str:
        return self.pattern.replace("{slot", "{" + name)


def _places(text: str) -> int:
    return len(text.split(".", 1)[1]) if "." in text else 0


def _digit_mention(m: re.Match[str]) -> Mention:
    num = m["num"]
    value = Fraction(num.replace(",", ""))
    places = _places(num)
    comma = "," in num
    if m["pct"]:
        suffix = m["pct"]
        return Mention(
            m.start("num"),
            m.end(),
            m.group(0)[m.start("num") - m.start() :],
            value,
            "percent",
            "{slot}" + suffix,
            places,
            {value / 100: "percent"},
        )
    if m["dollar"]:
        spec = ",.2f" if comma and places == 2 else "money" if places == 2 else "," if comma else ""
        pattern = "{slot:" + spec + "}" if spec else "{slot}"
        return Mention(m.start("num"), m.end("num"), num, value, "money", pattern, places)
    pattern = "{slot:,}" if comma else "{slot}"
    return Mention(m.start("num"), m.end("num"), num, value, "number", pattern, places)


def _word_mention(m: re.Match[str], text: str) -> Mention | None:
    word = m["word"]
    key = re.sub(r"\s+", " ", word.lower())
    start, end = m.start("word"), m.end("word")
    if key in _PARTS:
        if key == "half" and _NOT_A_PART.search(text[:start]):
            return None
        if text[end : end + 1] == "-":
            return None
        v = Fraction(_PARTS[key])
        return Mention(start, end, word, v, "part", "1/{slot}", 0, {1 / v: "reciprocal"})
    if key in _MULTIPLIERS:
        return Mention(start, end, word, Fraction(_MULTIPLIERS[key]), "multiplier", "{slot} times")
    if key in _CARDINALS:
        value = _CARDINALS[key]
    else:
        tens, unit = re.split(r"[-\s]", key, maxsplit=1)
        value = _CARDINALS[tens] + _CARDINALS[unit]
    if value == 0:
        return None
    return Mention(start, end, word, Fraction(value), "cardinal")


def find_mentions(text: str) -> list[Mention]:
    """All number mentions in `text`, in order, without overlaps.

    Zeros are skipped (they are never worth a variable), as are ordinals ("2nd"), numbers
    glued to a preceding word or decimal point, and "half" inside "one and a half".
    """
    found: list[Mention] = [_digit_mention(m) for m in _NUMBER_RE.finditer(text)]
    for m in _WORD_RE.finditer(text):
        mention = _word_mention(m, text)
        if mention is not None:
            found.append(mention)
    found.sort(key=lambda x: (x.start, -(x.end - x.start)))
    out: list[Mention] = []
    for mention in found:
        if mention.value == 0 or (out and mention.start < out[-1].end):
            continue
        out.append(mention)
    return out
