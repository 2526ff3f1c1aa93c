"""Question and solution templates: fields filled with values, nouns and pool draws.

Fields (`name` is a variable, a local of solution(), `answer`, or a pool role):

    {x}           the value, written as its kind writes it (money: 12.50; ints: 12; decimals:
                  2.5; Fractions: 3/4; LaTeX rendered in the sandbox as it is)
    {x:spec}      a format spec: money (2 decimals), latex (\\frac{3}{4}), or Python's (.1f)
    {x:n}         the value with its unit or noun, agreeing in number: "12 apples", "1 apple",
                  "$12.50", "1 hour", "2.5 kilometers", "25%"
    {x|word}      `word` agreeing with the value of x: {x|box} -> "box" / "boxes"
    {x|role}      the noun of a drawn thing agreeing with x: {n|fruit} -> "peach" / "peaches"
    {x|a}         "a" or "an" for x as written: {age|a} {age}-year-old -> "an 8-year-old"
                  ({x|A}: capitalised, to open a sentence)
    {role}        a drawn person's name or thing's noun: {person} -> "Maya"
    {role.attr}   person: they them their theirs themself (she/her/her/hers/herself or
                  he/him/his/his/himself) and name; thing: noun plural a the the_plural and
                  any field of the entry. Capitalised attr capitalises: {person.They}, {fruit.A}

A `{...}` that is not a field name is left as it is when it follows LaTeX (`\\sqrt{x}`,
`x^{2}`, `\\frac{1}{2}`), so MATH-style text needs no escaping, and a value may sit inside
LaTeX braces: `\\frac{{a}}{{b}}` -> `\\frac{3}{4}`. Templates made in code (decoupled dataset
seeds) escape literal braces as `{{` `}}`, as str.format does (`escapes=True`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from mathsynth.generators.common.pools import PoolItem
from mathsynth.inflection import agree, article
from mathsynth.numbers import format_number
from mathsynth.quantities import with_unit

_FIELD = re.compile(
    r"\{(?P<name>[A-Za-z_]\w*)(?:\.(?P<attr>\w+))?(?::(?P<spec>[^{}|]+))?(?:\|(?P<word>[^{}]+))?\}"
)
# A `{` that opens a LaTeX argument rather than a field: after \command, ^, _ or another group.
_LATEX_BEFORE = re.compile(r"(?:\\[A-Za-z]+|[\^_}{])\s*$")


@dataclass(frozen=True, slots=True)
class Field:
    start: int
    end: int
    name: str
    attr: str | None
    spec: str
    word: str | None


@lru_cache(maxsize=8192)
def fields_of(template: str) -> tuple[Field, ...]:
    """The `{...}` fields of a template, in order (doubled braces excluded)."""
    out = []
    for m in _FIELD.finditer(template):
        out.append(
            Field(m.start(), m.end(), m["name"], m["attr"], m["spec"] or "", m["word"] or None)
        )
    return tuple(out)


def latex_context(template: str, start: int) -> bool:
    """Whether the `{` at `start` opens a LaTeX argument (`\\sqrt{x}`, `x^{2}`)."""
    return bool(_LATEX_BEFORE.search(template[max(0, start - 24) : start]))


QuantityLookup = Callable[[str], Any]


def fill(
    template: str,
    values: Mapping[str, Any],
    *,
    kinds: QuantityLookup | None = None,
    roles: Mapping[str, PoolItem] | None = None,
    escapes: bool = True,
) -> str:
    """Fill every field of `template` (see the module docstring).

    `kinds(name)` gives the declared quantity of a name (kind, unit, noun: a
    `mathsynth.seeds.QuantityFields`) or None; `roles` the pool draws. With `escapes`
    (str.format style, for templates made in code) `{{` and `}}` become single braces;
    library templates keep every brace as written (LaTeX).

    Failure modes: KeyError naming a field whose name has no value (and is not a LaTeX
    argument), whose role lacks the attribute, or `{x:n}` on a name with no declared kind;
    ValueError for a format spec that does not apply to the value.
    """
    roles = roles or {}
    out: list[str] = []
    pos = 0
    for f in fields_of(template):
        if f.name not in values and f.name not in roles:
            if latex_context(template, f.start):
                continue
            raise KeyError(f.name)
        out.append(template[pos : f.start])
        out.append(_render(f, values, kinds, roles))
        pos = f.end
    out.append(template[pos:])
    text = "".join(out)
    return text.replace("{{", "{").replace("}}", "}") if escapes else text


_MATH = re.compile(r"\$([^$]+)\$")


def drop_repeated_sides(text: str) -> str:
    """In each `$...$` span, drop a side of an equation chain that repeats the side before it.

    Why: a step written as "unsimplified = simplified" (`$d = \\frac{{diff}}{{gap}} =
    {d:latex}$`) reads "$d = \\frac{1}{12} = \\frac{1}{12}$" on the draws where the value is
    already in lowest terms. Sides are compared without whitespace; only `=` outside braces
    splits (`\\frac{a}{b}` is one side). Meant for LaTeX text only: in plain text `$` is money.
    """

    def collapse(m: re.Match[str]) -> str:
        sides, depth, start = [], 0, 0
        body = m.group(1)
        for i, ch in enumerate(body):
            depth += ch == "{"
            depth -= ch == "}"
            if ch == "=" and depth == 0:
                sides.append(body[start:i])
                start = i + 1
        sides.append(body[start:])
        kept = [sides[0]]
        for side in sides[1:]:
            if "".join(side.split()) != "".join(kept[-1].split()):
                kept.append(side)
        if len(kept) == len(sides):
            return m.group(0)
        joined = "=".join(kept)
        return "$" + (joined if body[-1:].isspace() else joined.rstrip()) + "$"

    return _MATH.sub(collapse, text)


def _render(
    f: Field,
    values: Mapping[str, Any],
    kinds: QuantityLookup | None,
    roles: Mapping[str, PoolItem],
) -> str:
    if f.name in roles and f.name not in values:
        item = roles[f.name]
        if f.spec or f.word:
            raise KeyError(f"{f.name}: a role takes only an attribute, not :spec or |word")
        return item.attr(f.attr) if f.attr else item.text
    if f.attr:
        raise KeyError(f"{f.name}.{f.attr}: only pool roles have attributes")
    value = values[f.name]
    quantity = kinds(f.name) if kinds is not None else None
    if f.word is not None:
        return _agreeing(f.word, value, quantity, roles)
    if f.spec == "n":
        if quantity is None or getattr(quantity, "kind", None) is None:
            raise KeyError(f"{f.name}:n needs a declared kind")
        return _with_unit(value, quantity, roles)
    return format_value(value, quantity, f.spec)


def format_value(value: Any, quantity: Any, spec: str = "") -> str:
    """A value as text: its kind's format unless a spec is given (money -> 2 decimals)."""
    if not spec and quantity is not None and getattr(quantity, "kind", None) == "money":
        spec = "money" if not isinstance(value, str) else ""
    return format_number(value, spec)


def _with_unit(value: Any, quantity: Any, roles: Mapping[str, PoolItem]) -> str:
    number = format_value(value, quantity)
    if quantity.kind == "count":
        noun, plural_form = _noun(quantity.noun, roles, quantity.plural)
        return f"{number} {agree(noun, _numeric(value), plural_form)}"
    return with_unit(quantity.kind, quantity.unit, number, _numeric(value))


def _agreeing(word: str, value: Any, quantity: Any, roles: Mapping[str, PoolItem]) -> str:
    if word in ("a", "A"):
        chosen = article(format_value(value, quantity))
        return chosen.capitalize() if word == "A" else chosen
    noun, plural_form = _noun(word, roles, None)
    return agree(noun, _numeric(value), plural_form)


def _noun(
    noun: str, roles: Mapping[str, PoolItem], plural_form: str | None
) -> tuple[str, str | None]:
    """A literal noun, or a role's noun ("fruit" or "{fruit}") with the entry's plural."""
    key = noun[1:-1] if noun.startswith("{") and noun.endswith("}") else noun
    if key in roles:
        item = roles[key]
        return item.noun, item.plural
    if key != noun:
        raise KeyError(key)
    return noun, plural_form


def _numeric(value: Any) -> Any:
    """The value agreement is judged on: answers arrive as strings ("1.00", "3/4")."""
    if isinstance(value, str):
        from mathsynth.numbers import parse_number_or_none

        parsed = parse_number_or_none(value)
        return parsed if parsed is not None else value
    return value


def template_slots(template: str) -> set[str]:
    """Names the fields of a template use (values and roles)."""
    return {f.name for f in fields_of(template)}
