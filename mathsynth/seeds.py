"""Seeds, the input of every source generator: `Seed`, its template `SeedSpec` (with one
`VariableSpec` per variable) and `SeedTask`, one unit of a generator's work.

A templated seed is a problem with named slots. Its `program` defines
`solution(<variables>)` returning the answer; its `solution` template may use the variables,
any local variable of `solution()` (intermediate results, captured when the sandbox runs it),
and `answer`. Each line of the solution template is one step, written as an explicit equation
("{price} * {pct} / 100 = {discount}") so later stages (RISE) can recompute and edit steps.

The bundled library (`generators/seeds/library/*.yaml`) holds seeds written for this project;
dataset seeds become templated by InfinityMATH's decoupling. A library seed says more than a
decoupled one (generators/seeds/AUTHORING.md is the authors' guide):

- `questions`: several phrasings of the same problem (one is drawn per variant);
- `pools`: roles (a person, an object, a place) drawn from the pool files, so names, objects
  and contexts vary and pronouns agree with the drawn name;
- a quantity kind for every variable, every intermediate the templates show (`quantities`)
  and the answer (`answer.kind`), with a unit or noun and a plausible range; values outside
  a declared range are rejected like a failed constraint;
- `answer.phrase`: how another problem may refer to this one's answer when the two are
  composed ("the money {person} earns"); `link: true` on a variable: that slot may receive it.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mathsynth.numbers import AnswerType
from mathsynth.quantities import QuantityError, check_unit
from mathsynth.variables import exact_inputs

Number = int | float


class QuantityFields(BaseModel):
    """What a value is: its kind, unit or noun (see mathsynth.quantities)."""

    model_config = ConfigDict(extra="forbid")

    kind: str | None = None
    unit: str | None = None
    noun: str | None = None
    plural: str | None = None

    @model_validator(mode="after")
    def _check_kind(self) -> QuantityFields:
        if self.kind is None:
            if self.unit is not None or self.noun is not None:
                raise ValueError("a unit or noun needs a kind")
            return self
        try:
            canonical = check_unit(self.kind, self.unit, self.noun)
        except QuantityError as exc:
            raise ValueError(str(exc)) from None
        if self.kind not in ("count",) and canonical is not None:
            self.unit = canonical
        return self

    @property
    def unit_key(self) -> str | None:
        """What two quantities of one kind must share to be the same quantity: a count's
        noun, otherwise the unit."""
        return self.noun if self.kind == "count" else self.unit


class QuantitySpec(QuantityFields):
    """The kind of a computed value (an intermediate of solution(), or the answer) and the
    range a plausible value lies in (draws outside it are rejected)."""

    range: tuple[Number, Number] | None = None

    @model_validator(mode="after")
    def _check_range(self) -> QuantitySpec:
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError(f"range {list(self.range)}: low end above high end")
        return self


class VariableSpec(QuantityFields):
    """How to draw one variable, and what it is.

    - int: a whole number in [min, max], a multiple of `multiple_of` when given.
    - decimal: a number in [min, max] with exactly `places` decimal places at most.
    - fraction: a Fraction n/d in [min, max] with d taken from `denominators`.
    `choices`, when given, overrides the range: the value is drawn from that list.
    [min, max] (or the choices) is also the variable's plausible range. `link: true` marks a
    slot that a composition may fill with another problem's answer of the same kind and unit
    (every phrasing must then mention it once, as `{name:n}`, where a noun phrase can stand).
    """

    type: Literal["int", "decimal", "fraction"] = "int"
    min: Number | None = None
    max: Number | None = None
    default: Number | str
    multiple_of: int | None = None
    places: int = 2
    denominators: list[int] | None = None
    choices: list[Number] | None = None
    link: bool = False

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

    @property
    def bounds(self) -> tuple[Number, Number] | None:
        """The plausible range: [min, max], or the span of the choices."""
        if self.choices is not None:
            values = [float(Fraction(str(c))) for c in self.choices]
            return (min(values), max(values))
        if self.min is None or self.max is None:
            return None
        return (self.min, self.max)


class AnswerSpec(QuantitySpec):
    """The answer as YAML writes it: `answer: {value: "56", type: int, kind: count,
    noun: member, range: [8, 150], phrase: "the members of the club"}`."""

    value: str
    type: AnswerType = "int"
    phrase: str | None = None


class SeedSpec(BaseModel):
    """One templated seed problem (see module docstring for the template rules).

    `questions` holds the phrasings (`question`, the first, is the canonical one); a spec
    built in code may pass `question=` alone. The YAML form `answer: {value, type, kind, ...}`
    is read into `answer`, `answer_type` and `result`.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    topics: list[str] = Field(min_length=1, max_length=2)
    knowledge_points: list[str] = Field(min_length=1, max_length=5)
    difficulty: int = Field(ge=1, le=5)
    questions: list[str] = Field(min_length=1)
    solution: str
    program: str
    variables: dict[str, VariableSpec] = Field(min_length=1)
    constraints: list[str] = Field(default_factory=list)
    whole: list[str] = Field(default_factory=list)
    pools: dict[str, str] = Field(default_factory=dict)
    quantities: dict[str, QuantitySpec] = Field(default_factory=dict)
    answer_type: AnswerType = "int"
    answer: str
    result: AnswerSpec | None = None
    # Library templates write LaTeX braces as they are; specs made in code (decoupled dataset
    # seeds) escape literal braces as {{ }} the way str.format does.
    literal_braces: bool = False

    @model_validator(mode="before")
    @classmethod
    def _read_yaml_forms(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if "question" in data:
            if "questions" in data:
                raise ValueError("give `questions` (a list of phrasings) or `question`, not both")
            data["questions"] = [data.pop("question")]
        answer = data.get("answer")
        if isinstance(answer, dict):
            if "answer_type" in data or "result" in data:
                raise ValueError("answer: {value, type, ...} replaces answer_type")
            data["result"] = answer
            data["answer"] = str(answer.get("value", ""))
            data["answer_type"] = answer.get("type", "int")
        return data

    @model_validator(mode="after")
    def _result_matches(self) -> SeedSpec:
        if self.result is not None and (
            self.result.value != self.answer or self.result.type != self.answer_type
        ):
            raise ValueError("answer: `result` disagrees with answer / answer_type")
        return self

    @property
    def question(self) -> str:
        """The canonical phrasing (the first)."""
        return self.questions[0]

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

    def quantity(self, name: str) -> QuantityFields | None:
        """What a template name is: a variable, a declared intermediate, or `answer`."""
        if name in self.variables:
            return self.variables[name]
        if name == "answer":
            return self.result
        return self.quantities.get(name)


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
