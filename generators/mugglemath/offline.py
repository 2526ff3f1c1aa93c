"""MuggleMath offline: rule-based query augmentation driven by a seed's program.

Three of MuggleMath's five rewrite strategies can be done without an LLM because a templated
seed carries its program and variable specs:

- change_numbers: a subset of the numbers is redrawn far from the original values; the text
  is one of the seed's phrasings with its pool draws (no scaffolding sentence is added).
- percent_restatement: a percentage in the question is stated as the equal simple fraction
  ("25% of the students" becomes "1/4 of the students", "30% off" "3/10 off"), or a share
  written as a fraction as the equal percentage ("3/8 of the books" -> "37.5% of the
  books"), only where that reads naturally and only when exact; the solution's first line
  explains the conversion as an equation and goes on with the seed's first step ("1/4 is 1 *
  100 / 4 = 25 percent, so the walkers number 600 * 25 / 100 = 150.").
- compose: seed A's answer feeds one variable of seed B of the same kind and unit, chained by
  `generators.common.compose` into one question, one `solution()` and one step-by-step solution.

Every number in the output text comes from executing the programs in the sandbox; output
Problems stay `unchecked` until ExecVerifier re-runs the stored program and variables.

Determinism: the strategy (and, for compose, the partner) is fixed by the planner from
(global seed, seed id, index); the stage draws values from an RNG seeded the same way, so a
task's output never depends on the batch it lands in.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from mathsynth import __version__
from mathsynth.generators.common.compose import (
    ComposedDraft,
    Composer,
    Composition,
    compose_partners,
    slot_pattern,
)
from mathsynth.generators.common.instantiate import Draft, render_variant, sandbox_job, text_rng
from mathsynth.generators.common.rounds import emit_in_order, run_in_rounds
from mathsynth.generators.common.sampling import UnsatisfiableSpecError, draw_value, sample_values
from mathsynth.numbers import format_answer, format_number
from mathsynth.records import Problem, Record, Rejection, content_id
from mathsynth.seeds import Seed, SeedSpec, SeedTask
from mathsynth.stage import SourceStage
from mathsynth.variables import encode_variables
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob, SandboxResult

GENERATOR = "mugglemath"
OFFLINE_STRATEGIES = ("change_numbers", "percent_restatement", "compose")

# A redrawn number counts as "changed" only when it moved this share of its range away from
# the original; otherwise change_numbers would mostly produce near-copies of the seed.
_MIN_SHIFT = 0.25
# Restating 37% as 37/100 adds nothing (and "Bank B pays 7/100" reads badly): a percent is
# restated as a fraction only when its denominator is at most this.
_NICE_DENOMINATOR = 20

# Where a percent or a fraction can be restated and still read as English: "25% of the
# students" <-> "1/4 of the students", "25% off" -> "1/4 off". "Grew by 25%", "pays 5%
# interest" or "1/4 liter" are left alone.
_PERCENT_FIELD = r"\{{{name}(?::n)?\}}(?P<sign>%?)(?= (?:of|off)\b)"
_SHARE_FIELD = r"\{{{name}\}}(?= of\b)"


# --------------------------------------------------------------------------- planning


def _field(name: str, percent: bool) -> re.Pattern[str]:
    pattern = _PERCENT_FIELD if percent else _SHARE_FIELD
    return re.compile(pattern.format(name=re.escape(name)))


def _restatable(spec: SeedSpec, name: str, percent: bool) -> list[int]:
    """Phrasings in which `name` appears in a context that restates naturally."""
    out = []
    for k, question in enumerate(spec.questions):
        for m in _field(name, percent).finditer(question):
            # {pct}% needs the sign; {pct:n} writes it itself.
            if not percent or m.group("sign") or ":n}" in m.group(0):
                out.append(k)
                break
    return out


def percent_slots(spec: SeedSpec) -> list[str]:
    """Percent variables written as "{x:n} of" / "{x}% off" in some phrasing (a variable of
    kind percent; for kind-less specs, any variable written "{x}%")."""
    return [
        name
        for name, var in spec.variables.items()
        if var.kind in (None, "percent") and _restatable(spec, name, percent=True)
    ]


def fraction_slots(spec: SeedSpec) -> list[str]:
    """Fraction variables that are a share of a whole ("{x} of the books"), never a measure
    written as a fraction ("{x} liter", which must not become "25% liter")."""
    return [
        name
        for name, var in spec.variables.items()
        if var.type == "fraction"
        and var.kind in (None, "share", "probability")
        and _restatable(spec, name, percent=False)
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


def _fraction_text(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


# Words a solution step may open with that stay lower case mid-sentence; anything else (a
# name: "Mia eats ...", "Bank B pays ...") keeps its capital.
_OPENERS = frozenset(
    (
        "the",
        "a",
        "an",
        "each",
        "one",
        "two",
        "three",
        "there",
        "it",
        "its",
        "in",
        "over",
        "all",
        "together",
        "after",
        "without",
        "for",
        "both",
        "of",
        "as",
        "that",
        "this",
        "these",
        "those",
        "his",
        "her",
        "their",
        "he",
        "she",
        "they",
        "so",
        "then",
        "altogether",
        "at",
        "on",
        "by",
        "with",
        "from",
        "to",
        "every",
        "any",
        "some",
        "half",
        "twice",
    )
)


def _lower_first(step: str, names: set[str]) -> str:
    """A step continuing a sentence: its first word lower-cased when it is a common opener
    ("The discount is ..." -> "the discount is ..."), never when it is a name."""
    first = step.split(" ", 1)[0]
    if first in names or first.lower() not in _OPENERS:
        return step
    return step[:1].lower() + step[1:]


_DETERMINERS = frozenset(
    ["the", "that", "this", "these", "those", "his", "her", "their", "its", "every", "all", "each"]
)


def restated_context(question: str, shown: str) -> str:
    """What the restated value qualifies in the question: "of the students", "off the
    price", "of them" (the "of"/"off" and one noun, two after a determiner)."""
    at = question.find(shown)
    if at < 0:
        return ""
    words = re.findall(r"[\w'-]+|[^\w\s]", question[at + len(shown) :])
    if not words or words[0] not in ("of", "off"):
        return ""
    taken = words[:2]
    if len(words) > 2 and words[1] in _DETERMINERS and words[2].isalpha():
        taken = words[:3]
    return " ".join(w for w in taken if w.isalpha() or "'" in w)


def explain_conversion(
    question_form: str,
    equation: str,
    step: str,
    names: set[str],
    uses_slot: bool,
    context: str = "",
) -> str:
    """The first solution line of a restatement: the conversion as an equation, then the
    seed's own first step when it uses the restated value ("1/4 is 1 * 100 / 4 = 25
    percent, so the walkers number 600 * 25 / 100 = 150."); otherwise the conversion in the
    question's own words ("3/10 of that pay is the same as 3 * 100 / 10 = 30 percent of that
    pay.")."""
    if uses_slot:
        return f"{question_form} is {equation}, so {_lower_first(step, names)}"
    if context:
        return f"{question_form} {context} is the same as {equation} {context}."
    return f"{question_form} is {equation}."


# --------------------------------------------------------------------------- the stage


@dataclass(frozen=True, slots=True)
class _Attempt:
    """One candidate draw of one task; `slot` is the variable to restate, if any."""

    values: dict[str, Any]
    job: SandboxJob
    slot: str | None = None


class MuggleMathOffline(SourceStage):
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
        *,
        sandbox: Sandbox,
        seed: int = 0,
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

    def run(self, tasks: Iterable[SeedTask]) -> Iterator[Record]:
        planned = [self._planned(t) for t in tasks if t.seed is not None]
        outcomes: dict[int, Record] = {}
        singles: list[tuple[int, SeedTask, list[_Attempt]]] = []
        compositions: list[tuple[int, SeedTask, Composition]] = []
        for pos, task in enumerate(planned):
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

        yield from emit_in_order(self, outcomes, len(planned))

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
            return self.reject(
                self._task_record(task), "not_templated", f"seed {seed.id} has no program template"
            )
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
                    return self.reject(
                        self._task_record(task), "not_restatable", "no percentage or fraction slot"
                    )
                slot = rng.choice(slots)
                draws = [sample_values(spec, rng) for _ in range(self.attempts)]
                return [self._attempt(task, spec, v, i, slot=slot) for i, v in enumerate(draws)]
        except UnsatisfiableSpecError as exc:
            return self.reject(self._task_record(task), "no_valid_draw", str(exc))
        if strategy == "compose":
            partner = SeedSpec.model_validate(plan["partner"])
            return Composition(spec, partner, plan["slot"])
        return self.reject(
            self._task_record(task), "unknown_strategy", f"no offline strategy {strategy!r}"
        )

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
        """The first acceptable attempt (for restatements: the first whose value restates
        exactly and simply); None while not `final` and nothing is acceptable yet."""
        seed = task.seed
        assert seed is not None and seed.spec is not None
        spec = seed.spec
        original = spec.default_values()
        last = ("no_valid_draw", "no attempt")
        for attempt, result in zip(attempts, results, strict=True):
            if attempt.slot is None:
                draft = render_variant(spec, attempt.values, result, salt=self.global_seed)
                if not isinstance(draft, Draft):
                    last = draft
                    continue
                if attempt.values == original:
                    last = ("no_valid_draw", "draw equals the original numbers")
                    continue
                return self._problem(task, "change_numbers", draft)
            restated = self._restated(spec, attempt, result)
            if isinstance(restated, tuple):
                last = restated
                continue
            problem = self._problem(task, "percent_restatement", restated)
            problem.difficulty = min(5, spec.difficulty + 1)
            problem.provenance["restated"] = attempt.slot
            return problem
        if not final:
            return None
        reason, detail = last
        if reason != "not_restatable":
            reason, detail = "no_valid_draw", f"all {len(attempts)} draws failed; last: {detail}"
        return self.reject(self._task_record(task), reason, detail)

    def _restated(
        self, spec: SeedSpec, attempt: _Attempt, result: SandboxResult
    ) -> Draft | tuple[str, str]:
        """The draw rendered with `attempt.slot` restated percent <-> fraction in a phrasing
        where that reads naturally, the solution opening with the conversion; (reason,
        detail) when the value does not restate exactly and simply."""
        slot = attempt.slot
        assert slot is not None
        value = Fraction(str(attempt.values[slot]))
        percent = slot in percent_slots(spec)
        if percent:
            frac = value / 100
            if frac.denominator == 1 or frac.denominator > _NICE_DENOMINATOR:
                return "not_restatable", f"{format_number(value)}% is not a simple fraction"
            shown = _fraction_text(frac)  # what the question now says
            number = format_number(value)
            equation = f"{frac.numerator} * 100 / {frac.denominator} = {number} percent"
            question_form = shown
        else:
            pct = value * 100
            if format_answer(pct, "decimal") is None or value.denominator == 1:
                return "not_restatable", f"{value} is not an exact percent"
            shown = f"{format_number(pct)}%"
            equation = f"{format_number(pct)} / 100 = {_fraction_text(value)}"
            question_form = shown
        phrasings = _restatable(spec, slot, percent)
        k = phrasings[text_rng(spec, attempt.values, "restate").randrange(len(phrasings))]
        template = _field(slot, percent).sub(lambda _: shown, spec.questions[k], count=1)
        restated_spec = spec.model_copy(update={"questions": [template]})
        draft = render_variant(restated_spec, attempt.values, result, salt=self.global_seed)
        if not isinstance(draft, Draft):
            return draft
        steps = draft.solution.split("\n")
        uses_slot = bool(slot_pattern(slot).search(spec.solution.split("\n")[0]))
        names = {item.text for item in draft.roles.values()}
        context = restated_context(draft.question, shown)
        first = explain_conversion(question_form, equation, steps[0], names, uses_slot, context)
        rest = steps[1:] if uses_slot else steps
        solution = "\n".join([first, *rest])
        return Draft(
            draft.question, solution, draft.answer, draft.values, k, draft.roles, draft.scope
        )

    def _composed(
        self, task: SeedTask, comp: Composition, made: ComposedDraft | tuple[str, str]
    ) -> Record:
        if not isinstance(made, ComposedDraft):
            return self.reject(self._task_record(task), *made)
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
            provenance={
                **self._provenance(task),
                "partner": comp.b.id,
                "slot": comp.slot,
                "link": made.link,
                "text": made.text,
                "answer_type": comp.b.answer_type,
            },
        )
        return problem

    # ------------------------------------------------------------------ helpers

    def _problem(self, task: SeedTask, method: str, draft: Draft) -> Problem:
        assert task.seed is not None and task.seed.spec is not None
        spec = task.seed.spec
        return Problem(
            generator=GENERATOR,
            method=method,
            seed_id=spec.id,
            parent_id=spec.id,
            question=draft.question,
            solution=draft.solution,
            answer=draft.answer,
            program=spec.program,
            variables=encode_variables(draft.values),
            concepts=spec.concepts,
            difficulty=spec.difficulty,
            provenance={
                **self._provenance(task),
                "text": draft.text_choices,
                "answer_type": spec.answer_type,
            },
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

    def _task_record(self, task: SeedTask) -> dict[str, Any]:
        """What a rejected task was: its seed, index, strategy and compose partner."""
        seed = task.seed
        plan = seed.meta.get(GENERATOR, {}) if seed else {}
        return {
            "seed_id": seed.id if seed else None,
            "index": task.index,
            "strategy": plan.get("strategy", "change_numbers"),
            "partner": plan.get("partner", {}).get("id") if plan.get("partner") else None,
        }
