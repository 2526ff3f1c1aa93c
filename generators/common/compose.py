"""Two-seed composition: seed A's answer feeds one variable of seed B.

MuggleMath's compose strategy and MathScale's concept-pair questions both chain two templated
seeds. The question chains the two through a hand-over name, the program is one self-contained
`solution()` that runs both, and the solution text is A's steps, the hand-over, then B's steps.
`Composer` runs the draws in the sandbox and checks the composed program against B run alone.
"""

from __future__ import annotations

import random
import re
import textwrap
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mathsynth import pyparse
from mathsynth.generators.common.instantiate import ANSWER_LINE, Draft, render_variant, sandbox_job
from mathsynth.generators.common.sampling import UnsatisfiableSpecError, sample_values
from mathsynth.generators.common.templates import fill
from mathsynth.numbers import format_answer
from mathsynth.seeds import Seed, SeedSpec, VariableSpec
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob, SandboxResult

# The name the composed question gives to part 1's answer.
HANDOVER = "N"


@dataclass(frozen=True, slots=True)
class Composition:
    """Seed A feeds its answer into variable `slot` of seed B."""

    a: SeedSpec
    b: SeedSpec
    slot: str


def compatible_slots(a: SeedSpec, b: SeedSpec) -> list[str]:
    """B's variables that can take A's answer: same number type, free range, seen in question.

    A's original answer must lie in the slot's range, a cheap static proxy for "A's answers
    usually fit"; each draw is still checked after execution.
    """
    if a.id == b.id:
        return []
    try:
        a_answer = Fraction(a.answer)
    except (ValueError, ZeroDivisionError):
        return []
    slots = []
    for name, var in b.variables.items():
        if var.type != a.answer_type or var.choices is not None:
            continue
        if not slot_pattern(name).search(b.question):
            continue
        if _fits(a_answer, var):
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
    return re.compile(r"\{" + re.escape(name) + r"(?::[^}]*)?\}")


def _fits(value: Fraction, var: VariableSpec) -> bool:
    if var.min is not None and value < Fraction(str(var.min)):
        return False
    if var.max is not None and value > Fraction(str(var.max)):
        return False
    if var.type == "int":
        return value.denominator == 1 and value.numerator % (var.multiple_of or 1) == 0
    return True


def steps_of(draft: Draft) -> str:
    """A draft's solution steps without the closing answer line."""
    last = ANSWER_LINE.format(answer=draft.answer)
    return draft.solution.removesuffix(last).rstrip("\n")


def _with_answer_line(steps: str, answer: str) -> str:
    return f"{steps}\n{ANSWER_LINE.format(answer=answer)}"


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
    A's get a `_2` suffix. A's answer is converted to the slot's type on the way (a float
    40.0 becomes the int 40 that B's program may need, as in `Fraction(n, 40)`).

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

    code = (
        f"def solution({', '.join([*a_params, *b_params])}):\n"
        f"{part(part_1, comp.a.program)}\n"
        f"{part(part_2, comp.b.program)}\n"
        f"    {handover} = {_as_slot_type(call(part_1, a_params), comp.b.variables[comp.slot])}\n"
        f"    return {call(part_2, b_params, f'{comp.slot!r}: {handover}')}\n"
    )
    pyparse.module(code)
    return ComposedProgram(code, a_params, b_params)


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


def compose_text(
    comp: Composition, a: Draft, b: Draft, b_values: dict[str, Any]
) -> tuple[str, str]:
    """(question, solution) chaining A into B through the hand-over name."""
    others = {k: v for k, v in b_values.items() if k != comp.slot}
    b_template = slot_pattern(comp.slot).sub(HANDOVER, comp.b.question)
    question = (
        f"{a.question}\nLet {HANDOVER} be the answer to the question above. "
        f"{fill(b_template, others)}"
    )
    steps = f"{steps_of(a)}\n{HANDOVER} = {a.answer}\n{steps_of(b)}"
    return question, _with_answer_line(steps, b.answer)


# --------------------------------------------------------------------------- composer


@dataclass(frozen=True, slots=True)
class ComposedDraft:
    question: str
    solution: str
    answer: str
    program: str
    variables: dict[str, Any]


class Composer:
    """Runs compositions in two sandbox rounds shared by all requests of a call.

    Round 1 executes `attempts` draws of each A. Round 2 takes every A answer that fits B's
    slot, draws B's other variables, and runs both B alone (for its intermediate values) and
    the composed program (which must give the same answer). The first draw passing all checks
    wins, so the outcome depends only on the request's RNG.
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
            try:
                programs.append(compose_program(comp))
                a_draws.append([sample_values(comp.a, rng) for _ in range(self.attempts)])
            except (SyntaxError, UnsatisfiableSpecError) as exc:
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
            fitting = []
            for values in draws:
                draft = render_variant(comp.a, values, next(a_results))
                if isinstance(draft, Draft) and _fits(
                    Fraction(draft.answer), comp.b.variables[comp.slot]
                ):
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
                    b_values[comp.slot] = _as_type(Fraction(draft.answer), slot_var)
                    pending.append((r, draft, b_values, program))
                    n = len(pending)
                    b_jobs.append(sandbox_job(f"b:{r}:{n}", comp.b, b_values))
                    kwargs = program.variables(draft.values, b_values)
                    b_jobs.append(SandboxJob(id=f"ab:{r}:{n}", code=program.code, kwargs=kwargs))
        b_results = self._run(b_jobs)

        done: set[int] = set()
        for k, (r, a_draft, b_values, program) in enumerate(pending):
            if r in done:
                continue
            comp = requests[r][0]
            b_draft = render_variant(comp.b, b_values, b_results[2 * k])
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
            question, solution = compose_text(comp, a_draft, b_draft, b_values)
            out[r] = ComposedDraft(
                question,
                solution,
                b_draft.answer,
                program.code,
                program.variables(a_draft.values, b_values),
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
