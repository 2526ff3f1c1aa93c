"""MuggleMath offline strategies, checked by recomputing answers from the new question text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction

import pytest

from mathsynth.generators.common.compose import (
    Composition,
    compatible_slots,
    compose_program,
)
from mathsynth.generators.mugglemath.offline import (
    MuggleMathOffline,
    fraction_slots,
    percent_slots,
    plan_mugglemath,
)
from mathsynth.records import Problem, Rejection
from mathsynth.seeds import Seed, SeedSpec, SeedTask
from mathsynth.variables import decode_variables
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob

SALE = SeedSpec.model_validate(
    {
        "id": "t-sale",
        "topics": ["percentages"],
        "knowledge_points": ["percent of a quantity", "subtraction"],
        "difficulty": 2,
        "question": "A jacket costs {price:n}. It is on sale at {pct:n} off. "
        "What is the sale price in dollars?",
        "solution": "The discount is {price} * {pct} / 100 = {discount:n}.\n"
        "The jacket costs {price} - {discount} = {answer:n}.",
        "program": "def solution(price, pct):\n    discount = price * pct / 100\n"
        "    final = price - discount\n    return final\n",
        "variables": {
            "price": {"kind": "money", "min": 20, "max": 200, "multiple_of": 4, "default": 80},
            "pct": {"kind": "percent", "min": 5, "max": 75, "multiple_of": 5, "default": 25},
        },
        "quantities": {"discount": {"kind": "money"}},
        "whole": ["discount"],
        "answer": {"value": "60.00", "type": "money", "kind": "money", "range": [1, 200]},
    }
)
APPLES = SeedSpec.model_validate(
    {
        "id": "t-apples",
        "topics": ["arithmetic"],
        "knowledge_points": ["multiplication", "subtraction"],
        "difficulty": 1,
        "questions": [
            "Tom has {boxes:n} with {per_box:n} each. He gives away {given:n}. "
            "How many apples does he have left?",
            "Each of Tom's {boxes:n} holds {per_box:n}. After he hands out {given:n}, "
            "how many apples remain?",
        ],
        "solution": "Tom has {boxes} * {per_box} = {total:n}.\n"
        "He keeps {total} - {given} = {answer:n}.",
        "program": "def solution(boxes, per_box, given):\n    total = boxes * per_box\n"
        "    left = total - given\n    return left\n",
        "variables": {
            "boxes": {"kind": "count", "noun": "box", "min": 2, "max": 12, "default": 4},
            "per_box": {"kind": "count", "noun": "apple", "min": 3, "max": 20, "default": 6},
            "given": {"kind": "count", "noun": "apple", "min": 1, "max": 50, "default": 10},
        },
        "quantities": {"total": {"kind": "count", "noun": "apple"}},
        "constraints": ["given < boxes * per_box"],
        "answer": {
            "value": "14",
            "type": "int",
            "kind": "count",
            "noun": "apple",
            "range": [1, 240],
            "phrase": "the apples Tom has left",
        },
    }
)
BAGS = SeedSpec.model_validate(
    {
        "id": "t-bags",
        "topics": ["arithmetic"],
        "knowledge_points": ["division"],
        "difficulty": 1,
        "question": "Ada packs {apples:n} into bags of {per_bag}. How many bags does she fill?",
        "solution": "Ada fills {apples} / {per_bag} = {answer:n}.",
        "program": "def solution(apples, per_bag):\n    return apples / per_bag\n",
        "variables": {
            "apples": {
                "kind": "count",
                "noun": "apple",
                "min": 4,
                "max": 120,
                "default": 12,
                "link": True,
            },
            "per_bag": {"kind": "count", "noun": "apple", "choices": [1, 2], "default": 2},
        },
        "answer": {"value": "6", "type": "int", "kind": "count", "noun": "bag", "range": [1, 120]},
    }
)
CAKE = SeedSpec.model_validate(
    {
        "id": "t-cake",
        "topics": ["fractions"],
        "knowledge_points": ["fraction of a quantity", "subtraction"],
        "difficulty": 2,
        "question": "A cake has {slices:n}. Mia eats {part} of the cake. How many slices are left?",
        "solution": "Mia eats {part} * {slices} = {eaten:n}.\n"
        "{slices} - {eaten} = {answer:n} remain.",
        "program": "def solution(slices, part):\n    eaten = slices * part\n"
        "    return slices - eaten\n",
        "variables": {
            "slices": {"kind": "count", "noun": "slice", "min": 4, "max": 60, "default": 12},
            "part": {
                "kind": "share",
                "type": "fraction",
                "min": 0.1,
                "max": 0.9,
                "denominators": [2, 4, 5],
                "default": "1/4",
            },
        },
        "quantities": {"eaten": {"kind": "count", "noun": "slice"}},
        "whole": ["eaten"],
        "answer": {"value": "9", "type": "int", "kind": "count", "noun": "slice", "range": [1, 60]},
    }
)
SHIFTS = SeedSpec.model_validate(
    {
        "id": "t-shifts",
        "topics": ["time"],
        "knowledge_points": ["multiplication"],
        "difficulty": 1,
        "question": "Ana works {days:n} of {hours:n} each. How many hours does she work?",
        "solution": "Ana works {days} * {hours} = {answer:n}.",
        "program": "def solution(days, hours):\n    return days * hours\n",
        "variables": {
            "days": {"kind": "count", "noun": "shift", "min": 2, "max": 5, "default": 3},
            "hours": {"kind": "time", "unit": "hour", "min": 1, "max": 4, "default": 2},
        },
        "answer": {
            "value": "6",
            "type": "int",
            "kind": "time",
            "unit": "hour",
            "range": [1, 40],
            "phrase": "the time Ana works",
        },
    }
)
MACHINE = SeedSpec.model_validate(
    {
        "id": "t-machine",
        "topics": ["time"],
        "knowledge_points": ["unit rate"],
        "difficulty": 1,
        "question": "A press runs for {minutes:n} and stamps {rate} parts a minute. "
        "How many parts does it stamp?",
        "solution": "It stamps {minutes} * {rate} = {answer} parts.",
        "program": "def solution(minutes, rate):\n    return minutes * rate\n",
        "variables": {
            "minutes": {
                "kind": "time",
                "unit": "minute",
                "min": 60,
                "max": 1200,
                "default": 120,
                "link": True,
            },
            "rate": {"kind": "rate", "unit": "part per minute", "min": 2, "max": 9, "default": 3},
        },
        "answer": {
            "value": "360",
            "type": "int",
            "kind": "count",
            "noun": "part",
            "range": [1, 20000],
        },
    }
)
AGE = SeedSpec.model_validate(
    {
        "id": "t-age",
        "topics": ["arithmetic"],
        "knowledge_points": ["addition"],
        "difficulty": 1,
        "question": "Kim is {now:n} old. How old will she be in {years:n}?",
        "solution": "Kim will be {now} + {years} = {answer}.",
        "program": "def solution(now, years):\n    return now + years\n",
        "variables": {
            "now": {"kind": "age", "min": 5, "max": 40, "default": 10},
            "years": {"kind": "time", "unit": "year", "min": 1, "max": 9, "default": 3},
        },
        "answer": {"value": "13", "type": "int", "kind": "age", "range": [6, 50]},
    }
)
IMPOSSIBLE = SeedSpec.model_validate(
    {
        "id": "t-impossible",
        "topics": ["arithmetic"],
        "knowledge_points": ["addition"],
        "difficulty": 1,
        "question": "What is {a} plus 1?",
        "solution": "{a} + 1 = {answer}",
        "program": "def solution(a):\n    return a + 1\n",
        "variables": {"a": {"type": "int", "min": 1, "max": 9, "default": 2}},
        "constraints": ["a > 100"],
        "answer": "3",
    }
)
SPECS = [SALE, APPLES, CAKE, BAGS]


def as_seed(spec: SeedSpec) -> Seed:
    return Seed(id=spec.id, question=spec.question, answer=spec.answer, spec=spec)


def task(spec: SeedSpec, index: int, **plan: object) -> SeedTask:
    meta = {"mugglemath": plan} if plan else {}
    seed = as_seed(spec).model_copy(update={"meta": meta})
    return SeedTask(generator="mugglemath", seed=seed, index=index)


def numbers(text: str) -> list[Fraction]:
    return [Fraction(m) for m in re.findall(r"\d+/\d+|\d+(?:\.\d+)?", text)]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, timeout_s=5.0) as sb:
        yield sb


def problems(stage: MuggleMathOffline, tasks: list[SeedTask]) -> list[Problem]:
    out = list(stage.run(tasks))
    assert all(isinstance(r, Problem) for r in out), [r for r in out if isinstance(r, Rejection)]
    return out  # type: ignore[return-value]


def test_slot_detection() -> None:
    assert percent_slots(SALE) == ["pct"]
    assert fraction_slots(CAKE) == ["part"]
    assert percent_slots(APPLES) == [] and fraction_slots(APPLES) == []
    assert compatible_slots(APPLES, BAGS) == ["apples"]  # a count of apples into apples
    assert compatible_slots(APPLES, CAKE) == []  # apples are not slices
    assert compatible_slots(AGE, BAGS) == [] and compatible_slots(AGE, MACHINE) == []
    assert compatible_slots(SHIFTS, MACHINE) == ["minutes"]  # hours convert into minutes
    assert Composition(SHIFTS, MACHINE, "minutes").factor == 60
    assert compatible_slots(CAKE, CAKE) == []


def test_measures_written_as_fractions_are_not_restated() -> None:
    """ "1/4 liter" must never become "25% liter": only a share of a whole restates."""
    glass = CAKE.model_copy(
        update={
            "questions": ["Each glass holds {part} liter. How many glasses fill {slices} liters?"],
            "variables": {
                **CAKE.variables,
                "part": CAKE.variables["part"].model_copy(
                    update={"kind": "volume", "unit": "liter"}
                ),
            },
        }
    )
    assert fraction_slots(glass) == []
    interest = SALE.model_copy(
        update={"questions": ["A bank pays {pct:n} interest on {price:n}. What is the interest?"]}
    )
    assert percent_slots(interest) == []  # "pays 7/100 interest" reads badly


def test_change_numbers_recomputes_from_question(sandbox: Sandbox) -> None:
    stage = MuggleMathOffline(sandbox=sandbox, seed=7)
    out = problems(stage, [task(APPLES, i, strategy="change_numbers") for i in range(8)])
    openings = {"Tom has", "Each of"}
    for p in out:
        assert p.method == "change_numbers" and p.verification.status == "unchecked"
        assert p.question[:7] in openings and "Here is what we know" not in p.question
        boxes, per_box, given = numbers(p.question)
        assert p.answer == str(boxes * per_box - given)
        assert {"boxes": boxes, "per_box": per_box, "given": given} == p.variables
        assert p.variables != {"boxes": 4, "per_box": 6, "given": 10}
        assert p.solution.splitlines()[0].startswith(f"Tom has {boxes} * {per_box} = ")
        assert p.solution.endswith(f"The answer is {p.answer}.")
    assert len({p.question for p in out}) == len(out)
    assert len({p.question[:7] for p in out}) == 2  # both phrasings are used


def test_percent_restated_as_fraction(sandbox: Sandbox) -> None:
    out = problems(
        MuggleMathOffline(sandbox=sandbox, seed=1),
        [task(SALE, i, strategy="percent_restatement") for i in range(6)],
    )
    for p in out:
        assert "%" not in p.question
        price, frac = numbers(p.question)
        assert frac.denominator > 1 and frac.denominator <= 20  # "1/4", never "7/100"
        assert Fraction(p.answer) == price - price * frac
        pct = frac * 100
        assert pct == p.variables["pct"]
        first = p.solution.splitlines()[0]
        # The first line explains the step and goes straight on with the seed's own step.
        assert first.startswith(
            f"{frac} is {frac.numerator} * 100 / {frac.denominator} = {pct} percent, "
            "so the discount is "
        ), first
        assert f"{p.answer}" in p.solution.splitlines()[-1]


def test_fraction_restated_as_percent(sandbox: Sandbox) -> None:
    out = problems(
        MuggleMathOffline(sandbox=sandbox, seed=2),
        [task(CAKE, i, strategy="percent_restatement") for i in range(6)],
    )
    for p in out:
        slices, pct = numbers(p.question)
        assert f"{pct}% of the cake" in p.question and "/" not in p.question
        assert Fraction(p.answer) == slices - slices * pct / 100
        frac = Fraction(pct) / 100
        assert p.solution.startswith(f"{pct}% is {pct} / 100 = {frac}, so Mia eats ")


def test_compose_reads_as_one_problem(sandbox: Sandbox) -> None:
    tasks = [
        task(APPLES, i, strategy="compose", partner=BAGS.model_dump(mode="json"), slot="apples")
        for i in range(5)
    ]
    out = problems(MuggleMathOffline(sandbox=sandbox, seed=3), tasks)
    for p in out:
        assert "Let N" not in p.question and "question above" not in p.question
        # A's facts, then B's question with A's answer named by its phrase.
        assert "Ada packs the apples Tom has left into bags of" in p.question
        assert "How many apples does he have left?" not in p.question
        boxes, per_box, given, per_bag = numbers(p.question)
        handed = boxes * per_box - given
        assert Fraction(p.answer) == handed / per_bag
        lines = p.solution.splitlines()
        assert lines[1] == f"He keeps {boxes * per_box} - {given} = {handed} apples."
        assert lines[2].startswith(f"Ada fills {handed} / {per_bag} = ")
        assert "apples" not in p.variables  # computed by part 1, not an input
        assert p.concepts[:3] == APPLES.concepts
        link = p.provenance["link"]
        assert (link["from_kind"], link["from_unit"]) == (link["to_kind"], link["to_unit"])
        assert link["factor"] == "1" and link["in_range"]
    # The stored program alone reproduces the answer (what ExecVerifier will do).
    jobs = [
        SandboxJob(id=p.id, code=p.program or "", kwargs=decode_variables(p.variables)) for p in out
    ]
    for p, result in zip(out, sandbox.run(jobs), strict=True):
        assert result.status == "ok" and Fraction(result.result) == Fraction(p.answer)


def test_compose_converts_units_in_a_step(sandbox: Sandbox) -> None:
    tasks = [
        task(SHIFTS, i, strategy="compose", partner=MACHINE.model_dump(mode="json"), slot="minutes")
        for i in range(4)
    ]
    out = problems(MuggleMathOffline(sandbox=sandbox, seed=4), tasks)
    assert out
    for p in out:
        days, hours, rate = numbers(p.question)
        worked = days * hours
        assert f"A press runs for the time Ana works and stamps {rate} parts" in p.question
        assert f"\n{worked} hours is {worked} * 60 = {worked * 60} minutes.\n" in p.solution
        assert Fraction(p.answer) == worked * 60 * rate
        link = p.provenance["link"]
        assert (link["from_unit"], link["to_unit"], link["factor"]) == ("hour", "minute", "60")
    jobs = [
        SandboxJob(id=p.id, code=p.program or "", kwargs=decode_variables(p.variables)) for p in out
    ]
    for p, result in zip(out, sandbox.run(jobs), strict=True):
        assert result.status == "ok" and Fraction(result.result) == Fraction(p.answer)


def test_compose_program_renames_clashing_parameters(sandbox: Sandbox) -> None:
    assert CAKE.result is not None
    cake_a = CAKE.model_copy(
        update={"result": CAKE.result.model_copy(update={"phrase": "the slices left"})}
    )
    slices = CAKE.variables["slices"].model_copy(update={"link": True})
    cake_b = CAKE.model_copy(
        update={"id": "t-cake-2", "variables": {**CAKE.variables, "slices": slices}}
    )
    program = compose_program(Composition(cake_a, cake_b, "slices"))
    assert program.b_params == {"part_2": "part"}
    variables = program.variables({"slices": 12, "part": Fraction(1, 4)}, {"part": Fraction(1, 3)})
    (result,) = sandbox.run([SandboxJob(id="x", code=program.code, kwargs=variables)])
    assert result.status == "ok" and result.result == 6  # 12 -> 9 left -> 9 - 3 = 6


def test_plan_cycles_strategies_and_picks_compatible_partners() -> None:
    tasks = plan_mugglemath([as_seed(s) for s in SPECS], variants=6, seed=0)
    by_seed: dict[str, list[str]] = {}
    for t in tasks:
        assert t.seed is not None
        plan = t.seed.meta["mugglemath"]
        by_seed.setdefault(t.seed.id, []).append(plan["strategy"])
        if plan["strategy"] == "compose":
            partner = SeedSpec.model_validate(plan["partner"])
            assert plan["slot"] in compatible_slots(t.seed.spec, partner)  # type: ignore[arg-type]
    assert by_seed["t-apples"] == ["change_numbers", "compose"] * 3  # into t-bags
    restatable = ["change_numbers", "percent_restatement"] * 3
    assert by_seed["t-sale"] == restatable and by_seed["t-cake"] == restatable
    assert by_seed["t-bags"] == ["change_numbers"] * 6
    assert tasks == plan_mugglemath([as_seed(s) for s in SPECS], variants=6, seed=0)


def test_output_depends_on_task_not_batch(sandbox: Sandbox) -> None:
    tasks = plan_mugglemath([as_seed(s) for s in SPECS], variants=4, seed=5)
    whole = [r.id for r in MuggleMathOffline(sandbox=sandbox, seed=5).run(tasks)]
    split = [r.id for r in MuggleMathOffline(sandbox=sandbox, seed=5).run(tasks[:5])] + [
        r.id for r in MuggleMathOffline(sandbox=sandbox, seed=5).run(tasks[5:])
    ]
    assert whole == split
    other = [r.id for r in MuggleMathOffline(sandbox=sandbox, seed=6).run(tasks)]
    assert other != whole


def test_unsatisfiable_seed_becomes_rejection(sandbox: Sandbox) -> None:
    stage = MuggleMathOffline(sandbox=sandbox, seed=0, attempts=4)
    (record,) = stage.run([task(IMPOSSIBLE, 0, strategy="change_numbers")])
    assert isinstance(record, Rejection)
    assert record.reason == "no_valid_draw" and "a > 100" in record.detail
    assert stage.stats["rejected:no_valid_draw"] == 1


def test_bare_tasks_are_planned_from_the_pool(sandbox: Sandbox) -> None:
    seeds = [as_seed(s) for s in SPECS]
    planned = plan_mugglemath(seeds, variants=3, seed=9)
    bare = [SeedTask(generator="mugglemath", seed=s, index=i) for s in seeds for i in range(3)]
    from_plan = [r.id for r in MuggleMathOffline(sandbox=sandbox, seed=9).run(planned)]
    from_pool = [r.id for r in MuggleMathOffline(sandbox=sandbox, seed=9, pool=seeds).run(bare)]
    assert from_pool == from_plan
    methods = {
        getattr(r, "method", None) for r in MuggleMathOffline(sandbox=sandbox, seed=9).run(bare)
    }
    assert "compose" not in methods  # no pool, no partner
