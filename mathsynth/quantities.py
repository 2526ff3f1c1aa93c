"""What a number in a problem is: its kind (a count of apples, money, a length in meters, a
percent, a probability, ...), its unit, and how such a value is written.

Every variable of a bundled seed and every answer declares a kind, so that

- text renders a value the same way everywhere (money always with 2 decimals, a percent with
  "%", a count with its noun agreeing in number: "1 apple", "3 apples");
- a composition links one problem's answer only into a slot of the same kind and unit, or
  converts it explicitly (2 hours -> 120 minutes), never "an age of 30 becomes 30 m";
- plausibility can be judged: each kind has hard bounds (a probability lies in [0, 1], a
  percent of a whole in [0, 100], an age in [0, 130]) and each seed a declared range.

The vocabulary is closed on purpose: a misspelt kind or unit is an error the seed lint
reports, not a new kind that silently never matches.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

from mathsynth.inflection import agree

Kind = Literal[
    "count",  # people or objects, with their noun
    "money",  # an amount of money in a currency
    "length",
    "area",
    "volume",
    "mass",
    "time",  # a duration
    "speed",
    "rate",  # an amount per unit of something else: pages per hour, liters per minute
    "percent",  # 25 means 25%
    "share",  # a part of a whole written as a fraction or decimal: 3/4 of the class
    "probability",
    "ratio",  # a term of a ratio (the 3 in 3:5) or a ratio's value
    "age",  # in years
    "temperature",
    "angle",  # in degrees
    "number",  # a pure number: a digit count, a term of a sequence, a MATH-style answer
]
KINDS: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Unit:
    """A unit of one kind. `factor` converts to the kind's base unit within its `system`
    (only units of one system convert into each other: meters and kilometers, not feet)."""

    name: str
    plural: str | None = None
    factor: Fraction | None = None
    system: str = ""
    symbol: str | None = None  # written before the number: "$12.50"


def _units(system: str, **factors: int | Fraction) -> dict[str, Unit]:
    return {
        name.replace("_", " "): Unit(name.replace("_", " "), factor=Fraction(f), system=system)
        for name, f in factors.items()
    }


# Units per kind. Names are singular nouns (the plural comes from inflection unless given).
UNITS: dict[str, dict[str, Unit]] = {
    "money": {
        "dollar": Unit("dollar", factor=Fraction(100), system="usd", symbol="$"),
        "cent": Unit("cent", factor=Fraction(1), system="usd"),
        "euro": Unit("euro", factor=Fraction(100), system="eur", symbol="€"),
        "pound": Unit("pound", factor=Fraction(100), system="gbp", symbol="£"),
    },
    "length": {
        **_units("metric", millimeter=1, centimeter=10, meter=1000, kilometer=1000000),
        **_units("imperial", inch=1, foot=12, yard=36, mile=63360),
    },
    "area": {
        **_units(
            "metric",
            square_centimeter=1,
            square_meter=10**4,
            hectare=10**8,
            square_kilometer=10**10,
        ),
        **_units("imperial", square_inch=1, square_foot=144, square_yard=1296, acre=6272640),
    },
    "volume": {
        **_units("metric", milliliter=1, cubic_centimeter=1, liter=1000, cubic_meter=10**6),
        **_units("us", cup=1, pint=2, quart=4, gallon=16),
    },
    "mass": {
        **_units("metric", milligram=1, gram=1000, kilogram=10**6, tonne=10**9),
        **_units("imperial", ounce=1, pound=16),
    },
    "time": {
        **_units("clock", second=1, minute=60, hour=3600, day=86400, week=604800),
        "month": Unit("month", system="calendar"),
        "year": Unit("year", system="calendar"),
    },
    "speed": {
        "kilometer per hour": Unit("kilometer per hour"),
        "meter per second": Unit("meter per second"),
        "mile per hour": Unit("mile per hour"),
    },
    "temperature": {
        "degree Celsius": Unit("degree Celsius", plural="degrees Celsius"),
        "degree Fahrenheit": Unit("degree Fahrenheit", plural="degrees Fahrenheit"),
    },
    "angle": {"degree": Unit("degree")},
    "age": {"year": Unit("year")},
}

# Kinds whose quantity names its own unit: a count names its noun, a rate is free-form
# "<noun> per <unit>" ("page per hour"), the rest have no unit at all.
NOUN_KINDS = ("count",)
FREE_UNIT_KINDS = ("rate",)
UNITLESS_KINDS = ("percent", "share", "probability", "ratio", "number")
DEFAULT_UNIT = {"money": "dollar", "age": "year", "angle": "degree"}

# Hard bounds: no plausible value of the kind lies outside (None: unbounded that side).
BOUNDS: dict[str, tuple[Fraction | None, Fraction | None]] = {
    "count": (Fraction(0), None),
    "length": (Fraction(0), None),
    "area": (Fraction(0), None),
    "volume": (Fraction(0), None),
    "mass": (Fraction(0), None),
    "time": (Fraction(0), None),
    "speed": (Fraction(0), None),
    "rate": (Fraction(0), None),
    "percent": (Fraction(0), Fraction(1000)),
    "share": (Fraction(0), Fraction(1)),
    "probability": (Fraction(0), Fraction(1)),
    "ratio": (Fraction(0), None),
    "age": (Fraction(0), Fraction(130)),
    "temperature": (Fraction(-90), Fraction(1000)),
    "angle": (Fraction(0), Fraction(360)),
    "money": (None, None),
    "number": (None, None),
}

# Which answer types (mathsynth.numbers.AnswerType) an answer of each kind may have.
ANSWER_TYPES: dict[str, tuple[str, ...]] = {
    "count": ("int",),
    "money": ("money",),
    "percent": ("int", "decimal"),
    "age": ("int", "decimal"),
    "share": ("fraction", "decimal", "exact"),
    "probability": ("fraction", "decimal", "exact"),
}
ANY_ANSWER_TYPE = ("int", "decimal", "fraction", "exact")

# Kinds an answer may be linked into another problem by (compositions): extensive amounts a
# sentence can refer to ("the money she earned", "the distance he walks"). Intensive kinds
# (a percent, a probability, a speed, a ratio) are never handed over: "4% of apples" is nonsense.
LINKABLE_KINDS = ("count", "money", "length", "area", "volume", "mass", "time")


class QuantityError(ValueError):
    """A kind / unit declaration outside the vocabulary."""


def check_unit(kind: str, unit: str | None, noun: str | None) -> str | None:
    """The canonical unit of a declaration, or raise QuantityError naming what is wrong.

    count needs `noun` (its unit is the noun); rate needs a free-form `unit` ("page per
    hour"); unitless kinds take none; the others take one of UNITS[kind] (money, age and angle
    default to dollar, year, degree).
    """
    if kind not in KINDS:
        raise QuantityError(f"unknown kind {kind!r}; kinds are {', '.join(KINDS)}")
    if kind in NOUN_KINDS:
        if not noun:
            raise QuantityError("a count needs `noun` (the singular noun it counts)")
        if unit is not None:
            raise QuantityError("a count names its noun, not a unit")
        return noun
    if noun is not None:
        raise QuantityError(f"only counts have a noun, not {kind}")
    if kind in UNITLESS_KINDS:
        if unit is not None:
            raise QuantityError(f"{kind} has no unit")
        return None
    if kind in FREE_UNIT_KINDS:
        if not unit or " per " not in unit:
            raise QuantityError("a rate needs a unit of the form '<noun> per <unit>'")
        return unit
    unit = unit or DEFAULT_UNIT.get(kind)
    if unit is None:
        raise QuantityError(f"{kind} needs a unit: one of {', '.join(UNITS[kind])}")
    if unit not in UNITS[kind]:
        raise QuantityError(f"unknown {kind} unit {unit!r}; units are {', '.join(UNITS[kind])}")
    return unit


def unit_info(kind: str, unit: str | None) -> Unit | None:
    return UNITS.get(kind, {}).get(unit or "")


def conversion(kind: str, source: str | None, target: str | None) -> Fraction | None:
    """Factor turning a value in `source` units into `target` units (1 when equal), or None
    when they do not convert (other system, calendar months, different nouns)."""
    if source == target:
        return Fraction(1)
    a, b = unit_info(kind, source), unit_info(kind, target)
    if a is None or b is None or a.factor is None or b.factor is None or a.system != b.system:
        return None
    return a.factor / b.factor


def within_bounds(kind: str, value: Fraction) -> bool:
    lo, hi = BOUNDS.get(kind, (None, None))
    return (lo is None or value >= lo) and (hi is None or value <= hi)


def unit_words(kind: str, unit: str | None, value: Any) -> str:
    """The unit written after a value, agreeing in number ("1 hour", "2 hours", "3 feet");
    "" for unitless kinds and for symbol currencies (written before the number)."""
    if unit is None:
        return ""
    info = unit_info(kind, unit)
    if info is not None and info.symbol:
        return ""
    return agree(unit, value, info.plural if info else None)


def with_unit(kind: str, unit: str | None, number: str, value: Any) -> str:
    """ "12 apples" / "$12.50" / "25%" / "1 hour" for an already formatted number."""
    if kind == "percent":
        return f"{number}%"
    info = unit_info(kind, unit)
    if info is not None and info.symbol:
        return (
            f"{info.symbol}{number}"
            if not number.startswith("-")
            else f"-{info.symbol}{number[1:]}"
        )
    words = unit_words(kind, unit, value)
    return f"{number} {words}" if words else number
