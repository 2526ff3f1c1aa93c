"""Two-seed composition: seed A's answer becomes a number in seed B, as one problem.

MuggleMath's compose strategy and MathScale's concept-pair questions both chain two templated
seeds. A link is made only when it means something:

- A's answer and B's slot are the same kind of quantity with the same unit (a count of the
  same noun, money in the same currency), or units of one system that convert (hours into
  minutes, kilometers into meters); the conversion is then a solution step;
- the linked value lies in the slot's range (and fits its type and multiple), checked on
  every draw, so a composed problem never asks about a 480-member chess club;
- A declares `answer.phrase`, a noun phrase for its answer in its own story ("the money Maya
  earns"), and B's slot is `link: true` (it appears once per phrasing as `{slot:n}`, where a
  noun phrase can stand).

The joined question is A's facts (its phrasing without the final ask) followed by B's
question with the slot's number replaced by A's phrase: "Maya earns $12.00 an hour for 5
hours. Leo and Ana share the money Maya earns in the ratio 2:3. ..." B's pool roles are drawn
apart from A's (no two Mayas), except that a count noun drawn from a pool is shared, so the
apples A counts are the apples B uses. The program is one self-contained `solution()` that
runs both programs and converts on the way; the solution text is A's steps, the conversion
step when there is one, then B's steps. `Composer` runs the draws in the sandbox and checks
the composed program against B run alone.
"""

from __future__ import annotations

import random
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mathsynth import pysource
from mathsynth.generators.common.instantiate import (
    Draft,
    answer_line,
    render_variant,
    sandbox_job,
    text_rng,
)
from mathsynth.generators.common.pools import PoolItem, draw_roles
from mathsynth.generators.common.sampling import UnsatisfiableSpecError, sample_values
from mathsynth.generators.common.templates import fields_of, fill, format_value
from mathsynth.generators.seeds.checks import sentences
from mathsynth.inflection import capitalize
from mathsynth.numbers import format_answer, format_number
from mathsynth.quantities import LINKABLE_KINDS, conversion, with_unit
from mathsynth.seeds import QuantityFields, Seed, SeedSpec, VariableSpec
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob, SandboxResult


@dataclass(frozen=True, slots=True)
class Composition:
    """Seed A feeds its answer into variable `slot` of seed B."""

    a: SeedSpec
    b: SeedSpec
    slot: str

    @property
    def linkable(self) -> bool:
        """Whether the link is sound (same kind and unit, or a conversion): the Composer
        refuses any other; `compose_program` builds the program either way."""
        return link_factor(self.a, self.b, self.slot) is not None

    @property
    def factor(self) -> Fraction:
        """What A's answer is multiplied by to be in the slot's unit (1 when they match, and
        for a composition that is not linkable)."""
        return link_factor(self.a, self.b, self.slot) or Fraction(1)

    @property
    def link(self) -> dict[str, Any]:
        """The link as provenance records it: kinds and units on both sides."""
        result, slot = self.a.result, self.b.variables[self.slot]
        assert result is not None
        return {
            "from": self.a.id,
            "to": self.b.id,
            "slot": self.slot,
            "from_kind": result.kind,
            "from_unit": _unit_key(self.a, result),
            "to_kind": slot.kind,
            "to_unit": _unit_key(self.b, slot),
            "factor": str(self.factor),
        }


def _unit_key(spec: SeedSpec, quantity: QuantityFields) -> str | None:
    """The unit two linked quantities must share: the unit, a count's noun, or for a count
    whose noun is a pool role ("{fruit}"), the pool it is drawn from ("pool:fruits")."""
    key = quantity.unit_key
    if key and key.startswith("{") and key.endswith("}") and key[1:-1] in spec.pools:
        return f"pool:{spec.pools[key[1:-1]]}"
    return key


def link_factor(a: SeedSpec, b: SeedSpec, slot: str) -> Fraction | None:
    """The factor converting A's answer into B's slot, or None when they cannot be linked
    (different kinds, unconvertible units, no phrase, slot not linkable)."""
    result = a.result
    var = b.variables.get(slot)
    if result is None or result.phrase is None or var is None or not var.link:
        return None
    if result.kind != var.kind or result.kind not in LINKABLE_KINDS:
        return None
    if result.type not in ("int", "decimal", "money", "fraction"):
        return None
    source, target = _unit_key(a, result), _unit_key(b, var)
    if result.kind == "count" or source is None or target is None:
        return Fraction(1) if source == target and source is not None else None
    return conversion(result.kind, source, target)


def compatible_slots(a: SeedSpec, b: SeedSpec) -> list[str]:
    """B's variables that can take A's answer: same kind and unit (or a conversion), and
    A's original answer, converted, lies in the slot's range. The range is checked again on
    every draw; this static test only keeps pairs whose answers can usually fit."""
    if a.id == b.id:
        return []
    try:
        a_answer = Fraction(a.answer)
    except (ValueError, ZeroDivisionError):
        return []
    slots = []
    for name, var in b.variables.items():
        factor = link_factor(a, b, name)
        if factor is None:
            continue
        lo, hi = a.result.range if a.result and a.result.range else (a_answer, a_answer)
        # Some plausible answer of A must land in the slot: the ranges overlap once converted.
        bounds = var.bounds
        if bounds is None:
            continue
        if Fraction(str(hi)) * factor < Fraction(str(bounds[0])):
            continue
        if Fraction(str(lo)) * factor > Fraction(str(bounds[1])):
            continue
        slots.append(name)
    return slots


def compose_partners(spec: SeedSpec, pool: Iterable[Seed]) -> list[tuple[SeedSpec, str]]:
    """(partner, slot) pairs of the pool that can take `spec`'s answer."""
    return [
        (other.spec, slot)
        for other in pool
        if other.spec is not None
        for slot in compatible_slots(spec, other.spec)
    ]


def slot_pattern(name: str) -> re.Pattern[str]:
    """A template field naming `name`, with any spec or word (`{x}`, `{x:n}`, `{x|apple}`)."""
    return re.compile(r"\{" + re.escape(name) + r"(?:[:|][^{}]*)?\}")


def fits(value: Fraction, var: VariableSpec) -> bool:
    """Whether a linked `value` may stand in the variable: inside its plausible range (its
    draw range, or one of its choices) and of its number type. `multiple_of` is a drawing
    convenience, not a plausibility rule: B's own whole-number checks still apply."""
    if var.choices is not None:
        return value in {Fraction(str(c)) for c in var.choices}
    if var.min is not None and value < Fraction(str(var.min)):
        return False
    if var.max is not None and value > Fraction(str(var.max)):
        return False
    if var.type == "int":
        return value.denominator == 1
    if var.type == "decimal":
        return (value * 10**var.places).denominator == 1
    return value.denominator in (var.denominators or [value.denominator])


def steps_of(draft: Draft, answer_type: str) -> str:
    """A draft's solution steps without the closing answer line."""
    last = answer_line(draft.answer, answer_type)
    return draft.solution.removesuffix(last).rstrip("\n")


# --------------------------------------------------------------------------- composition


@dataclass(frozen=True, slots=True)
class ComposedProgram:
    """One `solution()` running A then B; `a_params`/`b_params` map outer names to inner."""

    code: str
    a_params: dict[str, str]
    b_params: dict[str, str]

    def variables(self, a_values: dict[str, Any], b_values: dict[str, Any]) -> dict[str, Any]:
        out = {outer: a_values[inner] for outer, inner in self.a_params.items()}
        out.update({outer: b_values[inner] for outer, inner in self.b_params.items()})
        return out


def compose_program(comp: Composition) -> ComposedProgram:
    """Nest both programs whole (imports and helpers included) inside one `solution()`.

    Each part is a closure holding the seed's full source, so its own `def solution` is a
    local name there and cannot clash with the outer one. B's parameters that share a name with
    A's get a `_2` suffix. A's answer is multiplied by the unit conversion (exactly, as a
    Fraction, when there is one) and converted to the slot's type on the way (a float 40.0
    becomes the int 40 that B's program may need, as in `Fraction(n, 40)`).

    Failure mode: a program that does not parse (or uses `from x import *`, illegal inside a
    function) raises SyntaxError.
    """
    a_names = list(comp.a.variables)
    b_params: dict[str, str] = {}
    for name in comp.b.variables:
        if name == comp.slot:
            continue
        outer = name
        while outer in a_names or outer in b_params:
            outer += "_2"
        b_params[outer] = name
    a_params = {n: n for n in a_names}
    taken = set(a_params) | set(b_params)
    part_1, part_2, handover = (_fresh(n, taken) for n in ("part_1", "part_2", "part_1_answer"))

    def call(func: str, params: dict[str, str], extra: str = "") -> str:
        items = [f"{inner!r}: {outer}" for outer, inner in params.items()]
        if extra:
            items.append(extra)
        return f"{func}({{{', '.join(items)}}})"

    def part(func: str, program: str) -> str:
        body = textwrap.indent(program.strip("\n"), " " * 8)
        return f"    def {func}(kwargs):\n{body}\n        return solution(**kwargs)\n"

    value = call(part_1, a_params)
    factor = comp.factor
    if factor != 1:
        value = f"__import__('fractions').Fraction({value}) * {_fraction_source(factor)}"
    code = (
        f"def solution({', '.join([*a_params, *b_params])}):\n"
        f"{part(part_1, comp.a.program)}\n"
        f"{part(part_2, comp.b.program)}\n"
        f"    {handover} = {_as_slot_type(value, comp.b.variables[comp.slot])}\n"
        f"    return {call(part_2, b_params, f'{comp.slot!r}: {handover}')}\n"
    )
    pysource.parse(code)
    return ComposedProgram(code, a_params, b_params)


def _fraction_source(value: Fraction) -> str:
    fraction = "__import__('fractions').Fraction"
    return f"{fraction}({value.numerator}, {value.denominator})"


def _as_slot_type(expr: str, var: VariableSpec) -> str:
    """Source converting `expr` the way `_as_type` converts a rendered answer."""
    if var.type == "int":
        return f"int(round({expr}))"
    if var.type == "decimal":
        return f"float({expr})"
    return f"__import__('fractions').Fraction({expr}).limit_denominator(10**6)"


def _fresh(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def a_phrasings(spec: SeedSpec) -> list[int]:
    """Phrasings of A that can open a composed problem: facts first, then one final ask that
    states no number (dropping it must not drop a fact)."""
    out = []
    for k, question in enumerate(spec.questions):
        parts = sentences(question)
        if len(parts) < 2 or any("?" in p for p in parts[:-1]):
            continue
        if any(f.name in spec.variables for f in fields_of(parts[-1])):
            continue
        out.append(k)
    return out


def facts_of(question: str) -> str:
    """A question without its final ask sentence."""
    return " ".join(sentences(question)[:-1])


def conversion_step(comp: Composition, a_answer: str, linked: Any) -> str:
    """The solution step turning A's answer into B's unit ("2 hours is 2 * 60 = 120
    minutes."), written as an `expr = value` equation RISE can recompute."""
    result, var = comp.a.result, comp.b.variables[comp.slot]
    assert result is not None
    factor = comp.factor
    shown = format_answer(Fraction(a_answer), "decimal") or a_answer
    before = with_unit(result.kind, result.unit, shown, Fraction(a_answer))
    after = with_unit(var.kind, var.unit, format_value(linked, var), linked)
    if factor.denominator == 1:
        expr = f"{shown} * {factor.numerator}"
    else:
        expr = f"{shown} / {format_number(1 / factor)}"
    return f"{capitalize(before)} is {expr} = {after}."


def compose_text(
    comp: Composition,
    a: Draft,
    b_values: dict[str, Any],
    b: Draft,
) -> tuple[str, str]:
    """(question, solution): A's facts, then B's question with the slot's mention replaced
    by A's answer phrase; A's steps, the conversion step if any, B's steps."""
    result = comp.a.result
    assert result is not None and result.phrase is not None
    phrase = fill(result.phrase, {}, roles=a.roles)
    template = slot_pattern(comp.slot).sub(lambda _: phrase, comp.b.questions[b.phrasing], count=1)
    others = {k: v for k, v in b_values.items() if k != comp.slot}
    b_question = fill(
        template, others, kinds=comp.b.quantity, roles=b.roles, escapes=not comp.b.literal_braces
    )
    if b_question.startswith(phrase):
        b_question = capitalize(b_question)
    question = f"{facts_of(a.question)} {b_question}"
    steps = [steps_of(a, comp.a.answer_type)]
    if comp.factor != 1:
        steps.append(conversion_step(comp, a.answer, b_values[comp.slot]))
    steps.append(steps_of(b, comp.b.answer_type))
    steps.append(answer_line(b.answer, comp.b.answer_type))
    return question, "\n".join(steps)


def b_roles(comp: Composition, a: Draft, rng: random.Random) -> dict[str, PoolItem]:
    """B's pool draws: apart from A's entries, except that a count noun B's slot takes from
    a pool is A's own entry (the apples A counts are the apples B packs)."""
    roles = draw_roles(comp.b.pools, rng, avoid=a.roles.values())
    slot_noun = comp.b.variables[comp.slot].noun or ""
    result_noun = (comp.a.result.noun if comp.a.result else None) or ""
    if slot_noun.startswith("{") and result_noun.startswith("{"):
        roles[slot_noun[1:-1]] = a.roles[result_noun[1:-1]]
    return roles


# --------------------------------------------------------------------------- composer


@dataclass(frozen=True, slots=True)
class ComposedDraft:
    question: str
    solution: str
    answer: str
    program: str
    variables: dict[str, Any]
    link: dict[str, Any]
    text: dict[str, Any]


class Composer:
    """Runs compositions in two sandbox rounds shared by all requests of a call.

    Round 1 executes `attempts` draws of each A. Round 2 takes every A answer that, converted,
    fits B's slot, draws B's other variables, and runs both B alone (for its intermediate
    values) and the composed program (which must give the same answer). The first draw
    passing all checks wins, so the outcome depends only on the request's RNG.
    """

    def __init__(self, sandbox: Sandbox, attempts: int) -> None:
        self.sandbox = sandbox
        self.attempts = attempts
        self.jobs_run = 0

    def run(
        self, requests: Sequence[tuple[Composition, random.Random]]
    ) -> list[ComposedDraft | tuple[str, str]]:
        out: list[ComposedDraft | tuple[str, str]] = []
        programs: list[ComposedProgram | None] = []
        a_draws: list[list[dict[str, Any]]] = []
        for comp, rng in requests:
            if not comp.linkable:
                programs.append(None)
                a_draws.append([])
                out.append(
                    ("no_compatible_draw", f"{comp.a.id} cannot feed {comp.b.id}.{comp.slot}")
                )
                continue
            try:
                program = compose_program(comp)
                self.sandbox.trust_assembled(program.code, (comp.a.program, comp.b.program))
                programs.append(program)
                a_draws.append([sample_values(comp.a, rng) for _ in range(self.attempts)])
            except (SyntaxError, UnsatisfiableSpecError, ValueError) as exc:
                programs.append(None)
                a_draws.append([])
                out.append(("no_valid_draw", f"cannot compose: {exc}"))
                continue
            out.append(("no_compatible_draw", f"no answer of {comp.a.id} fits {comp.slot}"))

        a_jobs = [
            sandbox_job(f"a:{r}:{i}", comp.a, values)
            for r, ((comp, _), draws) in enumerate(zip(requests, a_draws, strict=True))
            for i, values in enumerate(draws)
        ]
        a_results = iter(self._run(a_jobs))

        pending: list[tuple[int, Draft, dict[str, Any], ComposedProgram]] = []
        b_jobs: list[SandboxJob] = []
        for r, ((comp, rng), draws) in enumerate(zip(requests, a_draws, strict=True)):
            program = programs[r]
            openings = a_phrasings(comp.a)
            fitting = []
            for values in draws:
                result = next(a_results)
                if program is None or not openings:
                    continue
                phrasing = openings[text_rng(comp.a, values, "compose").randrange(len(openings))]
                draft = render_variant(comp.a, values, result, phrasing=phrasing)
                if not isinstance(draft, Draft):
                    continue
                linked = Fraction(draft.answer) * comp.factor
                if fits(linked, comp.b.variables[comp.slot]):
                    fitting.append(draft)
            if program is None or not fitting:
                continue
            # Spread the attempt budget over the A draws that fit, so one lucky A draw
            # still gets several tries at B's own constraints.
            per_draft = -(-self.attempts // len(fitting))
            for draft in fitting:
                for _ in range(per_draft):
                    try:
                        b_values = sample_values(comp.b, rng)
                    except UnsatisfiableSpecError:
                        break
                    slot_var = comp.b.variables[comp.slot]
                    linked = Fraction(draft.answer) * comp.factor
                    b_values[comp.slot] = _as_type(linked, slot_var)
                    pending.append((r, draft, b_values, program))
                    n = len(pending)
                    b_jobs.append(sandbox_job(f"b:{r}:{n}", comp.b, b_values))
                    kwargs = program.variables(draft.values, b_values)
                    b_jobs.append(
                        SandboxJob(
                            id=f"ab:{r}:{n}",
                            code=program.code,
                            kwargs=kwargs,
                            latex=comp.b.answer_type == "exact",
                        )
                    )
        b_results = self._run(b_jobs)

        done: set[int] = set()
        for k, (r, a_draft, b_values, program) in enumerate(pending):
            if r in done:
                continue
            comp, rng = requests[r]
            roles = b_roles(comp, a_draft, rng)
            b_draft = render_variant(comp.b, b_values, b_results[2 * k], roles=roles)
            if not isinstance(b_draft, Draft):
                out[r] = ("no_compatible_draw", f"{comp.b.id} with {comp.slot}: {b_draft[1]}")
                continue
            whole = b_results[2 * k + 1]
            if (
                whole.status != "ok"
                or format_answer(whole.result, comp.b.answer_type) != b_draft.answer
            ):
                out[r] = (
                    "compose_mismatch",
                    f"composed program gave {whole.result!r} ({whole.error})",
                )
                continue
            question, solution = compose_text(comp, a_draft, b_values, b_draft)
            link = {
                **comp.link,
                "value": a_draft.answer,
                "linked": format_number(b_values[comp.slot]),
                "in_range": fits(Fraction(str(b_values[comp.slot])), comp.b.variables[comp.slot]),
            }
            out[r] = ComposedDraft(
                question,
                solution,
                b_draft.answer,
                program.code,
                program.variables(a_draft.values, b_values),
                link,
                {"a": a_draft.text_choices, "b": b_draft.text_choices},
            )
            done.add(r)
        return out

    def _run(self, jobs: list[SandboxJob]) -> list[SandboxResult]:
        self.jobs_run += len(jobs)
        return self.sandbox.run(jobs) if jobs else []


def _as_type(value: Fraction, var: VariableSpec) -> int | float | Fraction:
    if var.type == "int":
        return int(value)
    if var.type == "decimal":
        return float(value)
    return value
