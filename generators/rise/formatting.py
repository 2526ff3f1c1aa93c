"""How a solution writes its numbers, so an edited number is written the same way.

A rejected solution must not be recognisable by how it writes numbers ("40.0." where the
chosen side writes "40."): a model would learn the formatting instead of the error. So every
number an edit writes copies the look of the number it replaces:

- the same number of decimal places. A whole number stays whole (a count of 12 apples never
  becomes 12.5 apples: `not_whole`), and "2.5" is not replaced by "5" or "2.25"
  (`format_changed`): the decimals a text shows are part of its look;
- trailing zeros only where the text itself pads to that many places ("12.50" in a text that
  writes money with two decimals), never as an artefact of the edit ("40.0");
- the same money sign, percent sign and fraction notation ("3/4" stays a fraction), and no
  leading zero where the replaced number had none (".8" -> ".2");
- thousands separators as the text uses them (none in a text that never writes one).

`NumberStyle.of(text)` reads those conventions off the chosen solution; `render_like` writes a
value in them or raises `Dropped` with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from mathsynth.generators.rise.plausible import Dropped
from mathsynth.generators.rise.steps import decimals, find_numbers, round_half_up


@dataclass(frozen=True, slots=True)
class NumberStyle:
    """The number conventions of one text.

    `padded` holds the decimal counts the text pads with trailing zeros (it writes "12.50",
    so a two-decimal number there is written with exactly two decimals); `thousands` whether it
    groups thousands with commas ("1,200").
    """

    padded: frozenset[int]
    thousands: bool

    @classmethod
    def of(cls, text: str) -> NumberStyle:
        padded = set()
        thousands = False
        for token in find_numbers(text):
            body = token.text.lstrip("-$").rstrip("%")
            if "," in body:
                thousands = True
            if "." in body and body.endswith("0"):
                padded.add(decimals(token.text))
        return cls(frozenset(padded), thousands)


@dataclass(frozen=True, slots=True)
class Shape:
    """What a number looks like apart from its digits."""

    money: bool
    places: int
    percent: bool
    fraction: bool


def shape(text: str) -> Shape:
    body = text.lstrip("-")
    return Shape(body.startswith("$"), decimals(text), text.endswith("%"), "/" in text)


def minimal_places(value: Fraction, limit: int = 6) -> int | None:
    """Decimal places `value` needs to be written exactly; None beyond `limit` (1/3)."""
    for places in range(limit + 1):
        if (value * 10**places).denominator == 1:
            return places
    return None


def render_like(value: Fraction, like: str, style: NumberStyle, *, rounded: bool = False) -> str:
    """`value` written the way the number `like` is written in a text of `style`.

    `rounded` is for results the text itself rounds ("= 33.33"): the value is rounded to the
    places `like` shows instead of having to fit them exactly.

    Raises Dropped("not_whole") when a whole number would need decimals and
    Dropped("format_changed") when the value cannot be written with the look of `like`.
    """
    want = shape(like)
    if want.fraction:
        if value.denominator == 1 or value < 0:
            raise Dropped("format_changed", f"{value} cannot be written as a fraction like {like}")
        # A fraction written in lowest terms stays so ("7/20" -> "7/10"); one that is not
        # keeps its denominator where the value allows it ("60/100" -> "70/100").
        denominator = int(like.rsplit("/", 1)[1].rstrip("%"))
        reduced = Fraction(like.lstrip("$").rstrip("%")).denominator == denominator
        if not reduced and (value * denominator).denominator == 1:
            return f"{value * denominator}/{denominator}"
        return f"{value.numerator}/{value.denominator}"
    shown = value * 100 if want.percent else value
    if rounded:
        shown = round_half_up(shown, want.places)
    places = minimal_places(shown)
    if places is None or places > want.places:
        reason = "not_whole" if want.places == 0 else "format_changed"
        raise Dropped(reason, f"{_plain(value)} needs more decimals than {like} shows")
    if places < want.places and want.places not in style.padded:
        # The text writes such numbers without padding ("2.5"), so this value would look
        # different ("3" or "3.0"): keep the number of decimals a text shows.
        raise Dropped("format_changed", f"{_plain(value)} would not show {want.places} decimals")
    body = _fixed(abs(shown), want.places, thousands=style.thousands or "," in like)
    if like.lstrip("-$").startswith(".") and body.startswith("0."):
        body = body[1:]  # ".8" is written without its leading zero: so is ".2"
    sign = "-" if shown < 0 else ""
    money = "$" if want.money else ""
    return f"{sign}{money}{body}{'%' if want.percent else ''}"


def _fixed(value: Fraction, places: int, *, thousands: bool) -> str:
    scale = 10**places
    units = value * scale
    assert units.denominator == 1, "caller checks the places first"
    whole, frac = divmod(int(units), scale)
    text = f"{whole:,}" if thousands else str(whole)
    return f"{text}.{str(frac).zfill(places)}" if places else text


def _plain(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


def signature(text: str) -> tuple[object, ...]:
    """How a whole text writes numbers: padding, thousands separators, money signs, and the
    look of its final number. Two texts with equal signatures cannot be told apart by those
    conventions (used to pair sampled solutions)."""
    style = NumberStyle.of(text)
    numbers = find_numbers(text)
    last = shape(numbers[-1].text) if numbers else None
    money = any(t.text.lstrip("-").startswith("$") for t in numbers)
    return (style.padded, style.thousands, money, last)
