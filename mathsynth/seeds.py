"""Seeds, the input of every source generator: `Seed`, its template `SeedSpec` (with one
`VariableSpec` per variable) and `SeedTask`, one unit of a generator's work.

A templated seed is a problem with named slots. Its `program` defines
`solution(<variables>)` returning the answer; its `solution` template may use the variables,
any local variable of `solution()` (intermediate results, captured when the sandbox runs it),
and `answer`. Each line of the solution template is one step, written as an explicit equation
("{price} * {pct} / 100 = {discount}") so later stages (RISE) can recompute and edit steps.

The bundled library (`generators/seeds/library/*.yaml`) holds seeds written for this project;
dataset seeds become templated by InfinityMATH's decoupling.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mathsynth.numbers import AnswerType
from mathsynth.variables import exact_inputs

Number = int | float


class VariableSpec(BaseModel):
    """How to draw one variable.

    - int: a whole number in [min, max], a multiple of `multiple_of` when given.
    - decimal: a number in [min, max] with exactly `places` decimal places at most.
    - fraction: a Fraction n/d in [min, max] with d taken from `denominators`.
    `choices`, when given, overrides the range: the value is drawn from that list.
    """

    model_config = ConfigDict(extra="forbid")

    type: Literal["int", "decimal", "fraction"] = "int"
    min: Number | None = None
    max: Number | None = None
    default: Number | str
    multiple_of: int | None = None
    places: int = 2
    denominators: list[int] | None = None
    choices: list[Number] | None = None

    @model_validator(mode="after")
    def _check(self) -> VariableSpec:
        if self.choices is None and (self.min is None or self.max is None):
            raise ValueError("needs either choices or both min and max")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        if self.type == "fraction" and not self.denominators and self.choices is None:
            raise ValueError("a fraction variable needs denominators or choices")
        return self

    def default_value(self) -> int | float | Fraction:
        """The default as a Python number of this variable's type ("3/4" for fractions)."""
        if self.type == "fraction":
            return Fraction(str(self.default))
        if self.type == "int":
            return int(self.default)
        return float(self.default)


class SeedSpec(BaseModel):
    """One bundled seed problem (see module docstring for the template rules)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    topics: list[str] = Field(min_length=1, max_length=2)
    knowledge_points: list[str] = Field(min_length=1, max_length=5)
    difficulty: int = Field(ge=1, le=5)
    question: str
    solution: str
    program: str
    variables: dict[str, VariableSpec] = Field(min_length=1)
    constraints: list[str] = Field(default_factory=list)
    whole: list[str] = Field(default_factory=list)
    answer_type: AnswerType = "int"
    answer: str

    @model_validator(mode="after")
    def _exact_fraction_inputs(self) -> SeedSpec:
        # The stored program must reproduce the answer from plain JSON variables, where a
        # fraction is the string "n/d" (see mathsynth.variables).
        fractions = [n for n, v in self.variables.items() if v.type == "fraction"]
        self.program = exact_inputs(self.program, fractions)
        return self

    @property
    def concepts(self) -> list[str]:
        return [*self.topics, *self.knowledge_points]

    def default_values(self) -> dict[str, Any]:
        return {name: spec.default_value() for name, spec in self.variables.items()}


class Seed(BaseModel):
    """A seed problem as read from any source (bundled library, GSM8K, MATH, Parquet, HF).

    `answer` is the gold final answer as a string. `spec` is set when the seed is templated
    (bundled seeds always; dataset seeds once decoupled), which is what instantiation needs.
    `source` names where it came from ("bundled" or a path / dataset id) and `line` the row.
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: str
    question: str
    answer: str
    solution: str = ""
    spec: SeedSpec | None = None
    source: str = "bundled"
    line: int | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class SeedTask(BaseModel):
    """One unit of work for a source generator: make output number `index` from `seed`.

    The flow cuts the list of tasks into batches; a generator's output for a task depends only
    on (config, seed, index), never on which batch it landed in, so resumes are exact.
    `seed` is None for generators that do not start from one seed (MathScale walks).
    """

    model_config = ConfigDict(frozen=True)

    generator: str
    seed: Seed | None
    index: int
