"""Question and solution templates: `{slot}` fields filled with numbers rendered by
`mathsynth.numbers.format_number` (`{x:money}` for 2 decimals)."""

from __future__ import annotations

import string
from functools import lru_cache
from typing import Any

from mathsynth.numbers import format_number


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
