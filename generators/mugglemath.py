"""MuggleMath offline: rule-based query augmentation driven by a seed's program.

Three of MuggleMath's five rewrite strategies can be done without an LLM because a templated
seed carries its program and variable specs:

- change_numbers: a subset of the numbers is redrawn far from the original values and the
  question is restated (the ask first, then the facts).
- percent_restatement: a percentage in the question is stated as the equal fraction ("25%"
  becomes "1/4"), or a fraction as the equal percentage, when that is exact; the solution
  gains the conversion as its first step.
- compose: seed A's answer feeds one variable of seed B whose spec accepts it. The question
  chains the two, the program is one self-contained `solution()` that runs both, and the
  solution text is A's steps, the hand-over, then B's steps.

Every number in the output text comes from executing the programs in the sandbox; output
Problems stay `unchecked` until ExecVerifier re-runs the stored program and variables.

Determinism: the strategy (and, for compose, the partner) is fixed by the planner from
(global seed, seed id, index); the stage draws values from an RNG seeded the same way, so a
task's output never depends on the batch it lands in.
"""

from __future__ import annotations

import ast
import random
import re
import textwrap
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, TypeVar

from generators.infinitymath import ANSWER_LINE, Draft, render_variant, sandbox_job
from generators.llm import (
    ChatRequest,
    Completion,
    LLMClient,
    LLMRequestError,
    ReplyParseError,
    complete_counted,
    usage_provenance,
)
from generators.llm.parsing import extract_code, extract_final_answer, extract_json_object
from generators.numbers import fill, format_answer, format_number
from generators.sampling import (
    UnsatisfiableSpecError,
    draw_value,
    encode_variables,
    sample_values,
)
from generators.seeds.spec import Seed, SeedSpec, SeedTask, VariableSpec
from mathsynth import __version__
from mathsynth.config import LLMSettings
from mathsynth.records import Problem, Record, Rejection, Verification, content_id
from mathsynth.stage import Stage
from verifiers.answers import AnswerChecker
from verifiers.sandbox import Sandbox, SandboxJob, SandboxResult

GENERATOR = "mugglemath"
R = TypeVar("R")
OFFLINE_STRATEGIES = ("change_numbers", "percent_restatement", "compose")

# A redrawn number counts as "changed" only when it moved this share of its range away from
# the original; otherwise change_numbers would mostly produce near-copies of the seed.
_MIN_SHIFT = 0.25
# Restating 37% as 37/100 adds nothing; prefer draws whose fraction is this simple.
_NICE_DENOMINATOR = 20
# The name the composed question gives to part 1's answer.
HANDOVER = "N"

_PERCENT_SLOT = re.compile(r"\{(\w+)(?::[^}]*)?\}\s?(%|percent\b)")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True, slots=True)
class Composition:
    """Seed A feeds its answer into variable `slot` of seed B."""

    a: SeedSpec
    b: SeedSpec
    slot: str


def percent_slots(spec: SeedSpec) -> list[str]:
    """Variables written as a percentage ("{rate}%") in the question template."""
    return [
        m.group(1) for m in _PERCENT_SLOT.finditer(spec.question) if m.group(1) in spec.variables
    ]


def fraction_slots(spec: SeedSpec) -> list[str]:
    """Fraction-typed variables that appear plainly (not as a percentage) in the question."""
    as_percent = set(percent_slots(spec))
    return [
        name
        for name, var in spec.variables.items()
        if var.type == "fraction"
        and name not in as_percent
        and _slot_pattern(name).search(spec.question)
    ]


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
        if not _slot_pattern(name).search(b.question):
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


def plan_strategy(
    seed: Seed, index: int, partners: Sequence[tuple[SeedSpec, str]], global_seed: int
) -> dict[str, Any]:
    """Strategy of task `index`: round robin over those that apply to the seed; for compose,
    a partner and slot drawn from (global seed, seed id, index)."""
    assert seed.spec is not None
    strategies = ["change_numbers"]
    if percent_slots(seed.spec) or fraction_slots(seed.spec):
        strategies.append("percent_restatement")
    if partners:
        strategies.append("compose")
    strategy = strategies[index % len(strategies)]
    plan: dict[str, Any] = {"strategy": strategy}
    if strategy == "compose":
        rng = random.Random(content_id(global_seed, GENERATOR, "plan", seed.id, index))
        partner, slot = rng.choice(list(partners))
        plan.update(partner=partner.model_dump(mode="json"), slot=slot)
    return plan


def plan_mugglemath(seeds: Iterable[Seed], variants: int, seed: int) -> list[SeedTask]:
    """`variants` tasks per templated seed, with their plans (see `plan_strategy`) stored in
    `seed.meta["mugglemath"]`, so the stage needs nothing beyond the task itself.

    A stage given the same seeds as `pool` makes the same plan for a bare SeedTask, so a flow
    may also build tasks from (seed, index) alone.
    """
    templated = [s for s in seeds if s.spec is not None]
    tasks = []
    for s in templated:
        assert s.spec is not None
        partners = compose_partners(s.spec, templated)
        for i in range(variants):
            plan = plan_strategy(s, i, partners, seed)
            planned = s.model_copy(update={"meta": {**s.meta, GENERATOR: plan}})
            tasks.append(SeedTask(generator=GENERATOR, seed=planned, index=i))
    return tasks


# --------------------------------------------------------------------------- text helpers


def _slot_pattern(name: str) -> re.Pattern[str]:
    return re.compile(r"\{" + re.escape(name) + r"(?::[^}]*)?\}")


def _fits(value: Fraction, var: VariableSpec) -> bool:
    if var.min is not None and value < Fraction(str(var.min)):
        return False
    if var.max is not None and value > Fraction(str(var.max)):
        return False
    if var.type == "int":
        return value.denominator == 1 and value.numerator % (var.multiple_of or 1) == 0
    return True


def restate(question: str) -> str:
    """Ask first, facts after: "What is X? Here is what we know: A. B." (single sentences stay)."""
    sentences = [s for s in _SENTENCE.split(question.strip()) if s]
    asks = [i for i, s in enumerate(sentences) if s.endswith("?")]
    if not asks or len(sentences) < 2:
        return question
    ask = sentences.pop(asks[-1])
    return f"{ask} Here is what we know: {' '.join(sentences)}"


def steps_of(draft: Draft) -> str:
    """A draft's solution steps without the closing answer line."""
    last = ANSWER_LINE.format(answer=draft.answer)
    return draft.solution.removesuffix(last).rstrip("\n")


def _with_answer_line(steps: str, answer: str) -> str:
    return f"{steps}\n{ANSWER_LINE.format(answer=answer)}"


def _fraction_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


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
    ast.parse(code)
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
    b_template = _slot_pattern(comp.slot).sub(HANDOVER, comp.b.question)
    question = (
        f"{a.question}\nLet {HANDOVER} be the answer to the question above. "
        f"{fill(b_template, others)}"
    )
    steps = f"{steps_of(a)}\n{HANDOVER} = {a.answer}\n{steps_of(b)}"
    return question, _with_answer_line(steps, b.answer)


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True, slots=True)
class _Restated:
    question: str
    solution: str
    answer: str
    values: dict[str, Any]
    denominator: int


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One candidate draw of one task; `slot` is the variable to restate, if any."""

    values: dict[str, Any]
    job: SandboxJob
    slot: str | None = None


class MuggleMathOffline(Stage):
    """Source generator: SeedTasks → augmented Problems (or Rejections).

    A task planned by `plan_mugglemath` carries its plan; a bare (seed, index) task is planned
    here the same way, with compose partners drawn from `pool` (the build's seeds; without a
    pool, compose is never chosen). Rejection reasons:
    not_templated, unknown_strategy, not_restatable, no_valid_draw (every attempt failed its
    constraints, execution or text rendering), no_compatible_draw (compose: A's answers never
    fit B's slot, or B failed with them), compose_mismatch (the composed program disagreed
    with running B directly).
    """

    name = GENERATOR

    def __init__(
        self,
        sandbox: Sandbox,
        seed: int = 0,
        *,
        pool: Iterable[Seed] = (),
        attempts: int = 12,
        config_hash: str = "",
    ) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.global_seed = seed
        self.pool = [s for s in pool if s.spec is not None]
        self.attempts = attempts
        self.config_hash = config_hash
        self._partners: dict[str, list[tuple[SeedSpec, str]]] = {}

    def run(self, records: Iterable[SeedTask]) -> Iterator[Record]:  # type: ignore[override]
        tasks = [self._planned(t) for t in records if t.seed is not None]
        outcomes: dict[int, Record] = {}
        singles: list[tuple[int, SeedTask, list[_Attempt]]] = []
        compositions: list[tuple[int, SeedTask, Composition]] = []
        for pos, task in enumerate(tasks):
            prepared = self._prepare(task)
            if isinstance(prepared, Rejection):
                outcomes[pos] = prepared
            elif isinstance(prepared, Composition):
                compositions.append((pos, task, prepared))
            else:
                singles.append((pos, task, prepared))

        def decide(k: int, results: list[SandboxResult], final: bool) -> Record | None:
            _, task, attempts = singles[k]
            return self._choose(task, attempts[: len(results)], results, final)

        candidates = [[a.job for a in attempts] for _, _, attempts in singles]
        chosen = run_in_rounds(self.sandbox, candidates, decide, self)
        for (pos, _, _), record in zip(singles, chosen, strict=True):
            outcomes[pos] = record

        composer = Composer(self.sandbox, self.attempts)
        requests = [(comp, self._rng(task, "compose")) for _, task, comp in compositions]
        for (pos, task, comp), made in zip(compositions, composer.run(requests), strict=True):
            outcomes[pos] = self._composed(task, comp, made)
        self.stat_update("sandbox_runs", composer.jobs_run)

        yield from emit_in_order(self, outcomes, len(tasks))

    # ------------------------------------------------------------------ per strategy

    def _planned(self, task: SeedTask) -> SeedTask:
        """The task with its plan: the planner's if it has one, else made from the pool."""
        seed = task.seed
        if seed is None or seed.spec is None or GENERATOR in seed.meta:
            return task
        partners = self._partners.get(seed.id)
        if partners is None:
            partners = self._partners[seed.id] = compose_partners(seed.spec, self.pool)
        plan = plan_strategy(seed, task.index, partners, self.global_seed)
        planned = seed.model_copy(update={"meta": {**seed.meta, GENERATOR: plan}})
        return task.model_copy(update={"seed": planned})

    def _prepare(self, task: SeedTask) -> list[_Attempt] | Composition | Rejection:
        seed = task.seed
        assert seed is not None
        if seed.spec is None:
            return self._reject(task, "not_templated", f"seed {seed.id} has no program template")
        spec = seed.spec
        strategy = seed.meta[GENERATOR]["strategy"]
        plan = seed.meta[GENERATOR]
        rng = self._rng(task, strategy)
        try:
            if strategy == "change_numbers":
                draws = [self._far_values(spec, rng) for _ in range(self.attempts)]
                return [self._attempt(task, spec, v, i) for i, v in enumerate(draws)]
            if strategy == "percent_restatement":
                slots = percent_slots(spec) + fraction_slots(spec)
                if not slots:
                    return self._reject(task, "not_restatable", "no percentage or fraction slot")
                slot = rng.choice(slots)
                draws = [sample_values(spec, rng) for _ in range(self.attempts)]
                return [self._attempt(task, spec, v, i, slot=slot) for i, v in enumerate(draws)]
        except UnsatisfiableSpecError as exc:
            return self._reject(task, "no_valid_draw", str(exc))
        if strategy == "compose":
            partner = SeedSpec.model_validate(plan["partner"])
            return Composition(spec, partner, plan["slot"])
        return self._reject(task, "unknown_strategy", f"no offline strategy {strategy!r}")

    def _far_values(self, spec: SeedSpec, rng: random.Random) -> dict[str, Any]:
        """Defaults with a random non-empty subset redrawn away from the original values."""
        values = spec.default_values()
        names = list(spec.variables)
        changed = rng.sample(names, rng.randint(1, len(names)))
        for name in changed:
            var = spec.variables[name]
            original = values[name]
            span = (var.max - var.min) if var.min is not None and var.max is not None else 0
            best = draw_value(var, rng)
            for _ in range(8):
                if abs(best - original) >= _MIN_SHIFT * span and best != original:
                    break
                candidate = draw_value(var, rng)
                if abs(candidate - original) > abs(best - original):
                    best = candidate
            values[name] = best
        return values

    def _attempt(
        self,
        task: SeedTask,
        spec: SeedSpec,
        values: dict[str, Any],
        i: int,
        slot: str | None = None,
    ) -> _Attempt:
        job_id = f"{task.seed.id if task.seed else ''}:{task.index}:{i}"
        return _Attempt(values, sandbox_job(job_id, spec, values), slot)

    def _choose(
        self, task: SeedTask, attempts: list[_Attempt], results: list[SandboxResult], final: bool
    ) -> Record | None:
        """The first acceptable attempt (for restatements: the first with a simple fraction);
        None while not `final` and nothing is acceptable yet."""
        seed = task.seed
        assert seed is not None and seed.spec is not None
        spec = seed.spec
        original = spec.default_values()
        fallback: Problem | None = None
        last = ("no_valid_draw", "no attempt")
        for attempt, result in zip(attempts, results, strict=True):
            draft = render_variant(spec, attempt.values, result)
            if not isinstance(draft, Draft):
                last = draft
                continue
            if attempt.slot is None:
                if attempt.values == original:
                    last = ("no_valid_draw", "draw equals the original numbers")
                    continue
                return self._problem(task, "change_numbers", draft, restate(draft.question))
            restated = self._restated(spec, attempt.slot, draft)
            if restated is None:
                last = ("not_restatable", f"{attempt.slot} has no exact restatement")
                continue
            problem = self._problem(task, "percent_restatement", restated, restated.question)
            problem.difficulty = min(5, spec.difficulty + 1)
            problem.provenance["restated"] = attempt.slot
            if restated.denominator <= _NICE_DENOMINATOR:
                return problem
            fallback = fallback or problem
        if not final:
            return None
        if fallback is not None:
            return fallback
        reason, detail = last
        if reason != "not_restatable":
            reason, detail = "no_valid_draw", f"all {len(attempts)} draws failed; last: {detail}"
        return self._reject(task, reason, detail)

    def _restated(self, spec: SeedSpec, slot: str, draft: Draft) -> _Restated | None:
        """The draft with `slot` restated percent↔fraction; None when that is not exact."""
        value = Fraction(str(draft.values[slot]))
        if slot in percent_slots(spec):
            frac = value / 100
            if frac.denominator == 1:  # 100% as "1/1" restates nothing
                return None
            pattern = re.compile(_slot_pattern(slot).pattern + r"\s?(%|percent\b)")
            template = pattern.sub(_fraction_text(frac), spec.question)
            step = f"{_fraction_text(frac)} * 100 = {format_number(value)}"
        else:
            percent = value * 100
            if format_answer(percent, "decimal") is None:
                return None
            frac = value
            template = _slot_pattern(slot).sub(f"{format_number(percent)}%", spec.question)
            step = f"{format_number(percent)} / 100 = {_fraction_text(value)}"
        question = fill(template, draft.values)
        return _Restated(
            question, f"{step}\n{draft.solution}", draft.answer, draft.values, frac.denominator
        )

    def _composed(
        self, task: SeedTask, comp: Composition, made: ComposedDraft | tuple[str, str]
    ) -> Record:
        if not isinstance(made, ComposedDraft):
            return self._reject(task, *made)
        assert task.seed is not None
        problem = Problem(
            generator=GENERATOR,
            method="compose",
            seed_id=task.seed.id,
            parent_id=task.seed.id,
            question=made.question,
            solution=made.solution,
            answer=made.answer,
            program=made.program,
            variables=encode_variables(made.variables),
            concepts=list(dict.fromkeys([*comp.a.concepts, *comp.b.concepts])),
            difficulty=min(5, max(comp.a.difficulty, comp.b.difficulty) + 1),
            provenance={**self._provenance(task), "partner": comp.b.id, "slot": comp.slot},
        )
        return problem

    # ------------------------------------------------------------------ helpers

    def _problem(
        self, task: SeedTask, method: str, draft: Draft | _Restated, question: str
    ) -> Problem:
        assert task.seed is not None and task.seed.spec is not None
        spec = task.seed.spec
        return Problem(
            generator=GENERATOR,
            method=method,
            seed_id=spec.id,
            parent_id=spec.id,
            question=question,
            solution=draft.solution,
            answer=draft.answer,
            program=spec.program,
            variables=encode_variables(draft.values),
            concepts=spec.concepts,
            difficulty=spec.difficulty,
            provenance=self._provenance(task),
        )

    def _provenance(self, task: SeedTask) -> dict[str, Any]:
        return {
            "index": task.index,
            "global_seed": self.global_seed,
            "config_hash": self.config_hash,
            "pipeline_version": __version__,
            "model": None,
        }

    def _rng(self, task: SeedTask, strategy: str) -> random.Random:
        seed_id = task.seed.id if task.seed else None
        return random.Random(content_id(self.global_seed, GENERATOR, strategy, seed_id, task.index))

    def _reject(self, task: SeedTask, reason: str, detail: str) -> Rejection:
        seed = task.seed
        plan = seed.meta.get(GENERATOR, {}) if seed else {}
        record = {
            "seed_id": seed.id if seed else None,
            "index": task.index,
            "strategy": plan.get("strategy", "change_numbers"),
            "partner": plan.get("partner", {}).get("id") if plan.get("partner") else None,
        }
        return Rejection(self.name, reason, detail, record)


# --------------------------------------------------------------------------- rounds

# Candidates run in two rounds: most tasks are decided by one of their first few draws, so
# the rest are executed only for tasks still undecided. Draws are made up front and judged in
# order, so the outcome is the same as running all of them.
FIRST_ROUND = 3

Decide = Callable[[int, list[SandboxResult], bool], R | None]


def run_in_rounds(
    sandbox: Sandbox, candidates: Sequence[Sequence[SandboxJob]], decide: Decide[R], stage: Stage
) -> list[R]:
    """Execute each task's candidate jobs until `decide(task, results, final)` returns a
    result; with `final` True (all candidates ran) it must return one."""
    out: dict[int, R] = {}
    seen: dict[int, list[SandboxResult]] = {k: [] for k in range(len(candidates))}
    for lo, hi in ((0, FIRST_ROUND), (FIRST_ROUND, None)):
        todo = [k for k in range(len(candidates)) if k not in out]
        jobs = [job for k in todo for job in candidates[k][lo:hi]]
        stage.stat_update("sandbox_runs", len(jobs))
        results = iter(sandbox.run(jobs) if jobs else [])
        for k in todo:
            seen[k].extend(next(results) for _ in candidates[k][lo:hi])
            final = len(seen[k]) == len(candidates[k])
            decided = decide(k, seen[k], final)
            if decided is not None:
                out[k] = decided
    return [out[k] for k in range(len(candidates))]


def emit_in_order(stage: Stage, outcomes: Mapping[int, Record], count: int) -> Iterator[Record]:
    """Yield tasks 0..count-1's outcomes in task order, counting each in `stage`'s stats as
    `accepted` (a Problem) or `rejected:<reason>` (a Rejection) when it is yielded."""
    for pos in range(count):
        record = outcomes[pos]
        key = "accepted" if isinstance(record, Problem) else f"rejected:{record.reason}"
        stage.stat_update(key)
        yield record


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


# --------------------------------------------------------------------------- LLM variant

LLM_STRATEGIES = (
    "change_numbers",
    "fractions_percentages",
    "combine_concepts",
    "add_conditional",
    "increase_complexity",
)

_AUGMENT_INSTRUCTIONS = {
    "change_numbers": "Change specific numbers in the question so that the answer changes.",
    "fractions_percentages": "Introduce fractions or percentages into the question.",
    "combine_concepts": "Combine the question with another mathematical concept, so that "
    "solving it needs both.",
    "add_conditional": "Add a conditional statement (an 'if ...' condition) that changes how "
    "the question is solved.",
    "increase_complexity": "Increase the complexity of the question by adding one more step "
    "to its solution.",
}

AUGMENT_PROMPT = """\
You are a math teacher writing new practice word problems.
Rewrite the given question into a new question. {instruction}
The new question must be self-contained, have exactly one numerical answer, and must not \
include its solution.

Given question:
{question}

Reply with JSON only: {{"question": "<the new question>"}}"""

SOLVE_PROMPT = """\
Solve the following math problem step by step, one step per line, writing each calculation \
as an explicit equation (for example "48 / 2 = 24"). End the solution with the line \
"The answer is <number>."
Then write a Python program in a ```python block that defines `solution()` with no \
arguments and returns the final answer as a number.

Problem:
{question}"""

# Reasoning paths are sampled hotter than the rewrite so that they can disagree.
PATH_TEMPERATURE = 0.9


def program_answer(result: Any) -> str | None:
    """Canonical answer text for a program's return value (int, 2-place decimal, fraction)."""
    if isinstance(result, str):
        return None
    for kind in ("int", "decimal", "fraction"):
        text = format_answer(result, kind)  # type: ignore[arg-type]
        if text is not None:
            return text
    return None


@dataclass(frozen=True, slots=True)
class ReasoningPath:
    """One sampled solution: its text without code, stated answer, and program."""

    solution: str
    answer: str
    program: str

    @classmethod
    def parse(cls, text: str) -> ReasoningPath:
        """Failure modes: ReplyParseError "no_code" / "no_answer" / "empty" / "refusal"."""
        program = extract_code(text)
        prose = _FENCED.sub("", text).strip()
        answer = extract_final_answer(prose)
        return cls(prose, answer, program)


_FENCED = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Vote:
    """The agreement among k sampled paths: the winning answer and the paths behind it."""

    answer: str | None
    votes: int
    k: int
    kept: list[int]  # paths in the majority whose program gives the same answer
    executed: dict[int, str | None]

    def detail(self, threshold: float) -> str:
        return (
            f"votes {self.votes}/{self.k} for {self.answer} (threshold {threshold:g}); "
            f"{len(self.kept)} of them match their program's output"
        )


def vote(
    paths: Sequence[ReasoningPath | None],
    results: Sequence[SandboxResult | None],
    checker: AnswerChecker,
    k: int,
) -> Vote:
    """Cluster stated answers by equivalence (first path of a cluster is its gold), pick the
    largest cluster (earliest on ties), and keep its paths whose program output agrees."""
    clusters: list[list[int]] = []
    for i, path in enumerate(paths):
        if path is None:
            continue
        golds = [(paths[c[0]].answer, path.answer) for c in clusters]  # type: ignore[union-attr]
        verdicts = checker.check_many(golds) if golds else []
        home = next((c for c, v in zip(clusters, verdicts, strict=True) if v.correct), None)
        if home is None:
            clusters.append([i])
        else:
            home.append(i)
    executed = {
        i: program_answer(r.result) if r is not None and r.status == "ok" else None
        for i, r in enumerate(results)
    }
    if not clusters:
        return Vote(None, 0, k, [], executed)
    best = max(clusters, key=len)  # max keeps the first of equal-sized clusters
    winner = paths[best[0]].answer  # type: ignore[union-attr]
    runs = [(i, executed[i]) for i in best if executed.get(i) is not None]
    verdicts = checker.check_many([(winner, out) for _, out in runs]) if runs else []
    kept = [i for (i, _), v in zip(runs, verdicts, strict=True) if v.correct]
    return Vote(winner, len(best), k, kept, executed)


class MuggleMathLLM(Stage):
    """Source generator: SeedTasks → LLM-rewritten questions kept by self-agreement.

    Task `index` picks the strategy (round robin over the five). For each new question,
    `settings.samples` reasoning paths are sampled, each with a program; the question is kept
    when the largest group of equivalent answers holds at least `agreement_threshold` of
    the k paths and a path of that group has a program (run in the sandbox) giving the same
    answer. There is no gold answer, so this agreement is the check that is recorded.

    Rejection reasons: llm_* (request failed), parse_* (unusable rewrite), no_paths (no
    path parsed), no_majority, program_disagrees.
    """

    name = GENERATOR

    def __init__(
        self,
        client: LLMClient,
        sandbox: Sandbox,
        checker: AnswerChecker,
        settings: LLMSettings,
        seed: int = 0,
        *,
        config_hash: str = "",
    ) -> None:
        super().__init__()
        self.client = client
        self.sandbox = sandbox
        self.checker = checker
        self.settings = settings
        self.global_seed = seed
        self.config_hash = config_hash

    def run(self, records: Iterable[SeedTask]) -> Iterator[Record]:  # type: ignore[override]
        tasks = [t for t in records if t.seed is not None]
        rewrites = self._complete(
            [
                ChatRequest(
                    messages=[{"role": "user", "content": self._augment_prompt(t)}],
                    purpose=f"{GENERATOR}.augment",
                )
                for t in tasks
            ]
        )
        outcomes: dict[int, Record] = {}
        asked: list[tuple[int, str, list[Completion]]] = []
        for pos, (task, reply) in enumerate(zip(tasks, rewrites, strict=True)):
            if isinstance(reply, LLMRequestError):
                outcomes[pos] = reply.to_rejection(self.name, self._record(task))
                continue
            try:
                data = extract_json_object(reply[0].text, ("question",))
                question = str(data["question"]).strip()
                if not question:
                    raise ReplyParseError("bad_fields", "empty question", reply[0].text)
            except ReplyParseError as exc:
                outcomes[pos] = exc.to_rejection(self.name, self._record(task))
                continue
            asked.append((pos, question, reply))

        k = self.settings.samples
        solved = self._complete(
            [
                ChatRequest(
                    messages=[{"role": "user", "content": SOLVE_PROMPT.format(question=q)}],
                    n=k,
                    temperature=max(self.settings.temperature, PATH_TEMPERATURE),
                    purpose=f"{GENERATOR}.solve",
                )
                for _, q, _ in asked
            ]
        )
        parsed: list[list[ReasoningPath | None]] = []
        jobs: list[SandboxJob] = []
        for (pos, _, _), reply in zip(asked, solved, strict=True):
            paths: list[ReasoningPath | None] = []
            if not isinstance(reply, LLMRequestError):
                for c in reply:
                    try:
                        paths.append(ReasoningPath.parse(c.text))
                    except ReplyParseError:
                        self.stat_update("paths_unparsed")
                        paths.append(None)
            parsed.append(paths)
            jobs.extend(
                SandboxJob(id=f"{pos}:{i}", code=p.program) for i, p in enumerate(paths) if p
            )
        self.stat_update("sandbox_runs", len(jobs))
        results = iter(self.sandbox.run(jobs) if jobs else [])
        for (pos, question, rewrite), reply, paths in zip(asked, solved, parsed, strict=True):
            runs = [next(results) if p is not None else None for p in paths]
            outcomes[pos] = self._judge(tasks[pos], question, rewrite, reply, paths, runs)

        yield from emit_in_order(self, outcomes, len(tasks))

    def _judge(
        self,
        task: SeedTask,
        question: str,
        rewrite: list[Completion],
        reply: list[Completion] | LLMRequestError,
        paths: list[ReasoningPath | None],
        runs: list[SandboxResult | None],
    ) -> Record:
        record = {**self._record(task), "question": question}
        if isinstance(reply, LLMRequestError):
            return reply.to_rejection(self.name, record)
        # The sampled paths themselves, so a dropped question shows what the model wrote.
        record["raw_replies"] = [c.text for c in reply]
        if not any(paths):
            return Rejection(self.name, "no_paths", "no reasoning path could be parsed", record)
        result = vote(paths, runs, self.checker, self.settings.samples)
        threshold = self.settings.agreement_threshold
        record["votes"] = {"answers": [p.answer if p else None for p in paths]}
        if result.votes / result.k < threshold:
            return Rejection(self.name, "no_majority", result.detail(threshold), record)
        if not result.kept:
            return Rejection(self.name, "program_disagrees", result.detail(threshold), record)
        chosen = paths[result.kept[0]]
        assert chosen is not None and task.seed is not None
        used = [*rewrite, *reply]
        usage = usage_provenance(used)
        return Problem(
            generator=GENERATOR,
            method=STRATEGY_METHODS[self._strategy(task)],
            seed_id=task.seed.id,
            parent_id=task.seed.id,
            question=question,
            solution=chosen.solution,
            answer=result.executed[result.kept[0]] or chosen.answer,
            program=chosen.program,
            variables={},
            concepts=task.seed.spec.concepts if task.seed.spec else [],
            difficulty=task.seed.spec.difficulty if task.seed.spec else 1,
            verification=Verification("verified", "agreement", result.detail(threshold)),
            provenance={
                **usage,
                "strategy": self._strategy(task),
                "index": task.index,
                "samples": self.settings.samples,
                "path_temperature": max(self.settings.temperature, PATH_TEMPERATURE),
                "global_seed": self.global_seed,
                "config_hash": self.config_hash,
                "pipeline_version": __version__,
            },
            tokens_in=usage["tokens_in"],
            tokens_out=usage["tokens_out"],
        )

    def _strategy(self, task: SeedTask) -> str:
        return LLM_STRATEGIES[task.index % len(LLM_STRATEGIES)]

    def _augment_prompt(self, task: SeedTask) -> str:
        assert task.seed is not None
        instruction = _AUGMENT_INSTRUCTIONS[self._strategy(task)]
        return AUGMENT_PROMPT.format(instruction=instruction, question=task.seed.question)

    def _complete(self, requests: list[ChatRequest]) -> list[list[Completion] | LLMRequestError]:
        return complete_counted(self.client, self, requests)

    def _record(self, task: SeedTask) -> dict[str, Any]:
        assert task.seed is not None
        return {"seed_id": task.seed.id, "index": task.index, "strategy": self._strategy(task)}


STRATEGY_METHODS = {s: f"llm_{s}" for s in LLM_STRATEGIES}
