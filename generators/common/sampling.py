"""Drawing variable values from a seed's VariableSpecs.

Only the per-variable rules (type, range, multiple, places, denominators, choices) are applied
here; relational constraints ("part < total") and whole-number intermediates need the program
to run, so they are checked in the sandbox by the caller, which resamples on failure.
"""

from __future__ import annotations

import math
import random
from fractions import Fraction
from typing import Any

from mathsynth.seeds import SeedSpec, VariableSpec


class UnsatisfiableSpecError(ValueError):
    """A variable's spec admits no value at all (e.g. no multiple of 7 in [1, 6])."""


def draw_value(spec: VariableSpec, rng: random.Random) -> int | float | Fraction:
    """One value for one variable.

    Failure modes: raises UnsatisfiableSpecError when the range holds no admissible value.
    """
    if spec.choices is not None:
        choice = rng.choice(spec.choices)
        if spec.type == "fraction":
            return Fraction(str(choice))
        return int(choice) if spec.type == "int" else float(choice)
    assert spec.min is not None and spec.max is not None  # guaranteed by VariableSpec
    if spec.type == "int":
        step = spec.multiple_of or 1
        lo, hi = math.ceil(spec.min / step), math.floor(spec.max / step)
        if lo > hi:
            raise UnsatisfiableSpecError(f"no multiple of {step} in [{spec.min}, {spec.max}]")
        return rng.randint(lo, hi) * step
    if spec.type == "decimal":
        scale = 10**spec.places
        lo, hi = math.ceil(spec.min * scale), math.floor(spec.max * scale)
        if lo > hi:
            raise UnsatisfiableSpecError(f"no {spec.places}-place value in range")
        return round(rng.randint(lo, hi) / scale, spec.places)
    denominators = spec.denominators or [1]
    for _ in range(64):
        d = rng.choice(denominators)
        lo, hi = math.ceil(spec.min * d), math.floor(spec.max * d)
        if lo <= hi:
            return Fraction(rng.randint(lo, hi), d)
    raise UnsatisfiableSpecError("no fraction with the given denominators in range")


def sample_values(spec: SeedSpec, rng: random.Random) -> dict[str, Any]:
    """A full assignment of the seed's variables, in declaration order (so draws replay)."""
    return {name: draw_value(var, rng) for name, var in spec.variables.items()}
