"""Number rendering and value sampling."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from mathsynth.generators.common.sampling import UnsatisfiableSpecError, draw_value
from mathsynth.generators.common.templates import fill
from mathsynth.numbers import format_answer, format_number, is_whole
from mathsynth.seeds import VariableSpec
from mathsynth.variables import decode_variables, encode_variables, exact_inputs


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        (12, "int", "12"),
        (12.0, "int", "12"),
        (12.5, "int", None),
        (0.1 * 3, "decimal", "0.3"),
        (2.345, "decimal", None),
        (Fraction(6, 8), "fraction", "3/4"),
        (Fraction(4, 2), "fraction", "2"),
        (True, "int", None),
        (float("inf"), "int", None),
    ],
)
def test_format_answer(value, kind, expected) -> None:
    assert format_answer(value, kind) == expected


def test_format_number_and_fill() -> None:
    assert format_number(3.0) == "3"
    assert format_number(2.5, "money") == "2.50"
    assert format_number(Fraction(1, 3)) == "1/3"
    assert fill("{a} + {b:money}", {"a": 2.0, "b": 3}) == "2 + 3.00"
    with pytest.raises(KeyError):
        fill("{missing}", {})
    assert is_whole(4.0000000000001) and not is_whole(4.1)


def test_draw_value_respects_spec() -> None:
    rng = random.Random(1)
    spec = VariableSpec(type="int", min=10, max=100, multiple_of=5, default=20)
    values = {draw_value(spec, rng) for _ in range(200)}
    assert all(v % 5 == 0 and 10 <= v <= 100 for v in values) and len(values) > 10
    dec = VariableSpec(type="decimal", min=1, max=2, places=1, default=1.5)
    decimals = [draw_value(dec, rng) for _ in range(50)]
    assert all(abs(v * 10 - round(v * 10)) < 1e-9 and 1 <= v <= 2 for v in decimals)
    frac = VariableSpec(type="fraction", min=0, max=1, denominators=[3, 4], default="1/3")
    fractions = [draw_value(frac, rng) for _ in range(50)]
    assert all(isinstance(v, Fraction) and 0 <= v <= 1 for v in fractions)
    with pytest.raises(UnsatisfiableSpecError):
        draw_value(VariableSpec(type="int", min=1, max=6, multiple_of=7, default=7), rng)


def test_variables_round_trip() -> None:
    values = {"a": 3, "b": Fraction(3, 4), "c": 2.5}
    assert decode_variables(encode_variables(values)) == values


def test_exact_inputs_makes_programs_take_plain_json_fractions() -> None:
    program = 'def solution(frac, n):\n    """Half a loaf."""\n    return frac * n\n'
    converted = exact_inputs(program, ["frac"])
    assert exact_inputs(converted, ["frac"]) == converted  # idempotent
    ns: dict = {}
    exec(converted, ns)
    assert ns["solution"](frac="3/4", n=8) == 6
    assert ns["solution"](frac=Fraction(3, 4), n=8) == 6
    assert exact_inputs(program, []) == program
    assert exact_inputs("x = 1\n", ["frac"]) == "x = 1\n"  # no solution(): left alone
