"""A templated seed instantiated with one draw of its variables: run, judged, rendered.

Every source method that fills a seed's templates with fresh numbers (InfinityMATH variants,
MuggleMath restatements and compositions, MathScale's offline problems, LLM decoupling's
round trip) goes through `render_variant`, so they all accept a draw by the same rules:
the program ran, the constraints and whole-number intermediates hold, the answer has the
seed's answer type, and every declared range holds (a chess club of 480 members is rejected
as `implausible_answer`, not written out).

The text of a variant is chosen with the numbers: one of the seed's phrasings and one entry
per pool role, from an RNG seeded by the seed id, the values and the caller's salt, so the
same draw always reads the same and a rerun reproduces every row.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from mathsynth.generators.common.pools import PoolItem, draw_roles
from mathsynth.generators.common.templates import drop_repeated_sides, fill
from mathsynth.numbers import format_answer, is_whole, parse_number_or_none
from mathsynth.quantities import within_bounds
from mathsynth.records import content_id
from mathsynth.seeds import QuantitySpec, SeedSpec
from mathsynth.variables import encode_variables
from mathsynth.verifiers.sandbox import SandboxJob, SandboxResult

ANSWER_LINE = "The answer is {answer}."


def answer_line(answer: str, answer_type: str = "int") -> str:
    """The closing line of every solution: the `answer` string exactly, LaTeX answers
    between `$...$` so they render as math ("The answer is $\\frac{3}{4}$.")."""
    shown = f"${answer}$" if answer_type == "exact" else answer
    return ANSWER_LINE.format(answer=shown)


@dataclass(frozen=True, slots=True)
class Draft:
    """An accepted draw rendered into text, before it becomes a Problem.

    `scope` is what the templates could use (variables, solution()'s locals, `answer`);
    `phrasing` the index of the question template used and `roles` the pool draws.
    """

    question: str
    solution: str
    answer: str
    values: dict[str, Any]
    phrasing: int = 0
    roles: dict[str, PoolItem] = field(default_factory=dict)
    scope: dict[str, Any] = field(default_factory=dict)

    @property
    def text_choices(self) -> dict[str, Any]:
        """What provenance records about the text: the phrasing and the pool draws."""
        return {"phrasing": self.phrasing, "roles": {k: v.text for k, v in self.roles.items()}}


def sandbox_job(job_id: str, spec: SeedSpec, values: dict[str, Any]) -> SandboxJob:
    """Run a seed's program on `values`, capturing locals for the solution template and
    checking the seed's constraints: the result `render_variant` judges. Exact (LaTeX)
    answers are rendered in the sandbox, where the sympy value lives."""
    return SandboxJob(
        id=job_id,
        code=spec.program,
        kwargs=values,
        capture_locals=True,
        checks=list(spec.constraints),
        latex=spec.answer_type == "exact",
    )


def implausible(
    spec: SeedSpec, scope: Mapping[str, Any], answer_value: Any
) -> tuple[str, str] | None:
    """(reason, detail) when a declared range or a kind's hard bounds do not hold."""
    for name, quantity in spec.quantities.items():
        if name in scope:
            problem = _out_of_range(name, quantity, scope[name])
            if problem:
                return "implausible_value", problem
    if spec.result is not None:
        problem = _out_of_range("answer", spec.result, answer_value)
        if problem:
            return "implausible_answer", problem
    return None


def _out_of_range(name: str, quantity: QuantitySpec, value: Any) -> str | None:
    number = _exact(value)
    if number is None:
        return None  # symbolic values (LaTeX) have no magnitude to judge
    if quantity.range is not None:
        lo, hi = (Fraction(str(x)) for x in quantity.range)
        if not lo <= number <= hi:
            return f"{name} = {float(number):g} is outside its range {list(quantity.range)}"
    if quantity.kind is not None and not within_bounds(quantity.kind, number):
        return f"{name} = {float(number):g} is not a possible {quantity.kind}"
    return None


def _exact(value: Any) -> Fraction | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, Fraction)):
        return Fraction(value)
    if isinstance(value, float):
        return Fraction(value).limit_denominator(10**9)
    if isinstance(value, str):
        return parse_number_or_none(value)
    return None


def text_rng(spec: SeedSpec, values: Mapping[str, Any], salt: object = "") -> random.Random:
    """The RNG choosing a variant's phrasing and pool draws: a function of the draw alone."""
    return random.Random(content_id("text", spec.id, encode_variables(dict(values)), salt))


def _says_money(spec: SeedSpec) -> bool:
    kinds = [v.kind for v in spec.variables.values()] + [q.kind for q in spec.quantities.values()]
    return spec.answer_type == "money" or "money" in kinds


def render_variant(
    spec: SeedSpec,
    values: dict[str, Any],
    result: SandboxResult,
    *,
    salt: object = "",
    phrasing: int | None = None,
    roles: Mapping[str, PoolItem] | None = None,
    avoid: Iterable[PoolItem] = (),
) -> Draft | tuple[str, str]:
    """Check one executed draw and fill the templates, or return (reason, detail).

    `phrasing` / `roles` force the text choices (otherwise drawn by `text_rng`); `avoid`
    keeps pool entries used by another part of a composed problem out of the draw.

    Reasons: exec_error / exec_timeout / exec_memory / exec_killed, constraint_unsatisfied,
    non_integer_intermediate, answer_type_mismatch, implausible_value, implausible_answer,
    template_slot_missing.
    """
    if result.status != "ok":
        return f"exec_{result.status}", result.error or result.status
    if result.failed_checks:
        return "constraint_unsatisfied", "; ".join(result.failed_checks)
    scope: dict[str, Any] = {**(result.locals or {}), **values}
    for name in spec.whole:
        if name not in scope:
            return "template_slot_missing", f"whole-number name {name!r} is not a local"
        if not is_whole(scope[name]):
            return "non_integer_intermediate", f"{name} = {scope[name]!r} is not whole"
    answer = format_answer(result.result, spec.answer_type)
    if answer is None:
        return "answer_type_mismatch", f"{result.result!r} is not a valid {spec.answer_type}"
    bad = implausible(spec, scope, result.result)
    if bad is not None:
        return bad
    rng = text_rng(spec, values, salt)
    k = rng.randrange(len(spec.questions)) if phrasing is None else phrasing
    scope["answer"] = answer
    try:
        drawn = dict(roles) if roles is not None else draw_roles(spec.pools, rng, avoid=avoid)
        escapes = not spec.literal_braces
        question = fill(
            spec.questions[k], values, kinds=spec.quantity, roles=drawn, escapes=escapes
        )
        steps = fill(spec.solution, scope, kinds=spec.quantity, roles=drawn, escapes=escapes)
        steps = steps.strip()
        if not _says_money(spec):  # there `$` opens math, not a price
            steps = drop_repeated_sides(steps)
    except (KeyError, IndexError, ValueError) as exc:
        return "template_slot_missing", f"template slot {exc} has no value"
    solution = f"{steps}\n{answer_line(answer, spec.answer_type)}"
    return Draft(question, solution, answer, values, k, drawn, scope)
