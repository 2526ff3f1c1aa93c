"""Values crossing the worker pipe: JSON with type tags, so the parent never unpickles
anything a program produced.

Plain JSON carries None/bool/int/float/str/list/dict-with-str-keys; a Fraction travels as
{"$fraction": [numerator, denominator]}. A dict whose keys start with "$" travels as
{"$dict": [[key, value], ...]} so it cannot be mistaken for a tag.
"""

from __future__ import annotations

import numbers
from fractions import Fraction
from typing import Any

_MAX_DEPTH = 64


class UnsafeValueError(ValueError):
    """A value that cannot be represented (too deep, or a dict with non-string keys)."""


def encode(value: Any, _depth: int = 0) -> Any:
    """Tag a JSON-safe value (see `to_safe`) for the wire."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Fraction):
        return {"$fraction": [value.numerator, value.denominator]}
    if _depth > _MAX_DEPTH:
        raise UnsafeValueError("value nested too deeply")
    if isinstance(value, list):
        return [encode(v, _depth + 1) for v in value]
    if isinstance(value, dict):
        if any(k.startswith("$") for k in value):
            return {"$dict": [[k, encode(v, _depth + 1)] for k, v in value.items()]}
        return {k: encode(v, _depth + 1) for k, v in value.items()}
    raise UnsafeValueError(f"cannot encode {type(value).__name__}")


def decode(value: Any, _depth: int = 0) -> Any:
    """Inverse of `encode`. Raises UnsafeValueError on a malformed tag."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if _depth > _MAX_DEPTH:
        raise UnsafeValueError("value nested too deeply")
    if isinstance(value, list):
        return [decode(v, _depth + 1) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "$fraction":
                if (
                    not isinstance(inner, list)
                    or len(inner) != 2
                    or not all(type(x) is int for x in inner)
                    or inner[1] == 0
                ):
                    raise UnsafeValueError("malformed $fraction tag")
                return Fraction(inner[0], inner[1])
            if key == "$dict":
                if not isinstance(inner, list) or not all(
                    isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in inner
                ):
                    raise UnsafeValueError("malformed $dict tag")
                return {k: decode(v, _depth + 1) for k, v in inner}
        return {k: decode(v, _depth + 1) for k, v in value.items()}
    raise UnsafeValueError(f"unexpected JSON value {type(value).__name__}")


def to_safe(value: Any, _depth: int = 0, *, strict: bool = False) -> Any:
    """Convert what a program returned into the JSON-safe vocabulary.

    Exact numbers stay exact: sympy Integer -> int, sympy Rational -> Fraction, other reals
    -> float; tuples/sets become lists; anything else (sympy expressions, Decimal, complex,
    objects) becomes its str(), or raises UnsafeValueError when `strict`. Runs inside the
    worker: a hostile __str__ is bounded by the job's timeout.
    """
    if value is None or isinstance(value, bool | str):
        return value
    if type(value) is int or type(value) is float or type(value) is Fraction:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Rational):
        return Fraction(int(value.numerator), int(value.denominator))
    if isinstance(value, numbers.Real):
        return float(value)
    if _depth > _MAX_DEPTH:
        raise UnsafeValueError("value nested too deeply")
    if isinstance(value, list | tuple):
        return [to_safe(v, _depth + 1, strict=strict) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((to_safe(v, _depth + 1, strict=strict) for v in value), key=repr)
    if isinstance(value, dict):
        return {str(k): to_safe(v, _depth + 1, strict=strict) for k, v in value.items()}
    if strict:
        raise UnsafeValueError(f"cannot send a {type(value).__name__}")
    return str(value)


def is_scalar(value: Any) -> bool:
    """Values kept when capturing locals: numbers and strings."""
    return isinstance(value, str | numbers.Number) and not isinstance(value, complex)


def to_plain_json(value: Any) -> Any:
    """For user-facing JSONL: Fractions become "n/d" strings, the rest is plain JSON."""
    if isinstance(value, Fraction):
        return str(value)
    if isinstance(value, list):
        return [to_plain_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain_json(v) for k, v in value.items()}
    return value
