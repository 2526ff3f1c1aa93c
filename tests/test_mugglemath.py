"""MuggleMath offline strategies, checked by recomputing answers from the new question text."""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction

import pytest

from mathsynth.generators.common.compose import (
    HANDOVER,
    Composition,
    compatible_slots,
    compose_program,
)
from mathsynth.generators.mugglemath.offline import (
    MuggleMathOffline,
    fraction_slots,
    percent_slots,
    plan_mugglemath,
    restate,
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
        "question": "A jacket costs ${price}. It is on sale for {pct}% off. "
        "What is the sale price in dollars?",
        "solution": "{price} * {pct} / 100 = {discount}\n{price} - {discount} = {answer}",
        "program": "def solution(price, pct):\n    discount = price * pct / 100\n"
        "    final = price - discount\n    return final\n",
        "variables": {
            "price": {"type": "int", "min": 20, "max": 200, "multiple_of": 4, "default": 80},
            "pct": {"type": "int", "min": 5, "max": 75, "multiple_of": 5, "default": 25},
        },
        "whole": ["discount"],
        "answer": "60",
    }
)
APPLES = SeedSpec.model_validate(
    {
        "id": "t-apples",
        "topics": ["arithmetic"],
        "knowledge_points": ["multiplication", "subtraction"],
        "difficulty": 1,
        "question": "Tom has {boxes} boxes with {per_box} apples each. He gives away {given} "
        "apples. How many apples does he have left?",
        "solution": "{boxes} * {per_box} = {total}\n{total} - {given} = {answer}",
        "program": "def solution(boxes, per_box, given):\n    total = boxes * per_box\n"
        "    left = total - given\n    return left\n",
        "variables": {
            "boxes": {"type": "int", "min": 2, "max": 12, "default": 4},
            "per_box": {"type": "int", "min": 3, "max": 20, "default": 6},
            "given": {"type": "int", "min": 1, "max": 50, "default": 10},
        },
        "constraints": ["given < boxes * per_box"],
        "answer": "14",
    }
)
CAKE = SeedSpec.model_validate(
    {
        "id": "t-cake",
        "topics": ["fractions"],
        "knowledge_points": ["fraction of a quantity", "subtraction"],
        "difficulty": 2,
        "question": "A cake has {slices} slices. Mia eats {part} of the cake. "
        "How many slices are left?",
        "solution": "{slices} * {part} = {eaten}\n{slices} - {eaten} = {answer}",
        "program": "def solution(slices, part):\n    eaten = slices * part\n"
        "    return slices - eaten\n",
        "variables": {
            "slices": {"type": "int", "min": 4, "max": 60, "default": 12},
            "part": {
                "type": "fraction",
                "min": 0.1,
                "max": 0.9,
                "denominators": [2, 4, 5],
                "default": "1/4",
            },
        },
        "whole": ["eaten"],
        "answer": "9",
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
SPECS = [SALE, APPLES, CAKE]


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
    assert compatible_slots(APPLES, CAKE) == ["slices"]  # 14 fits slices in [4, 60]
    assert compatible_slots(APPLES, SALE) == []  # 14 is below price's minimum of 20
    assert compatible_slots(CAKE, CAKE) == []


def test_restate_puts_the_ask_first() -> None:
    assert restate("Tom has 3 cats. He buys 2. How many cats now?") == (
        "How many cats now? Here is what we know: Tom has 3 cats. He buys 2."
    )
    assert restate("What is 2 plus 3?") == "What is 2 plus 3?"


def test_change_numbers_recomputes_from_question(sandbox: Sandbox) -> None:
    stage = MuggleMathOffline(sandbox=sandbox, seed=7)
    out = problems(stage, [task(APPLES, i, strategy="change_numbers") for i in range(8)])
    for p in out:
        assert p.method == "change_numbers" and p.verification.status == "unchecked"
        assert p.question.startswith("How many apples does he have left?")
        boxes, per_box, given = numbers(p.question)
        assert p.answer == str(boxes * per_box - given)
        assert {"boxes": boxes, "per_box": per_box, "given": given} == p.variables
        assert p.variables != {"boxes": 4, "per_box": 6, "given": 10}
        assert p.solution.splitlines()[0] == f"{boxes} * {per_box} = {boxes * per_box}"
        assert p.solution.endswith(f"The answer is {p.answer}.")
    assert len({p.question for p in out}) == len(out)


def test_percent_restated_as_fraction(sandbox: Sandbox) -> None:
    out = problems(
        MuggleMathOffline(sandbox=sandbox, seed=1),
        [task(SALE, i, strategy="percent_restatement") for i in range(6)],
    )
    for p in out:
        assert "%" not in p.question
        price, frac = numbers(p.question)
        assert frac.denominator > 1  # "1/4", not a bare integer
        assert Fraction(p.answer) == price - price * frac
        assert frac * 100 == p.variables["pct"]
        assert p.solution.splitlines()[0] == f"{frac} * 100 = {frac * 100}"


def test_fraction_restated_as_percent(sandbox: Sandbox) -> None:
    out = problems(
        MuggleMathOffline(sandbox=sandbox, seed=2),
        [task(CAKE, i, strategy="percent_restatement") for i in range(6)],
    )
    for p in out:
        slices, pct = numbers(p.question)
        assert f"{pct}%" in p.question and "/" not in p.question
        assert Fraction(p.answer) == slices - slices * pct / 100


def test_compose_feeds_a_answer_into_b(sandbox: Sandbox) -> None:
    tasks = [
        task(APPLES, i, strategy="compose", partner=CAKE.model_dump(mode="json"), slot="slices")
        for i in range(5)
    ]
    out = problems(MuggleMathOffline(sandbox=sandbox, seed=3), tasks)
    for p in out:
        part_1, part_2 = p.question.split(f"Let {HANDOVER} be the answer to the question above.")
        boxes, per_box, given = numbers(part_1)
        handed = boxes * per_box - given
        assert "Mia eats" in part_2 and f"A cake has {HANDOVER} slices" in part_2
        (eaten_part,) = numbers(part_2)
        assert Fraction(p.answer) == handed - handed * eaten_part
        assert f"\n{HANDOVER} = {handed}\n" in p.solution
        assert "slices" not in p.variables  # computed by part 1, not an input
        assert p.concepts[:3] == APPLES.concepts
        assert p.provenance["partner"] == CAKE.id
    # The stored program alone reproduces the answer (what ExecVerifier will do).
    jobs = [
        SandboxJob(id=p.id, code=p.program or "", kwargs=decode_variables(p.variables)) for p in out
    ]
    for p, result in zip(out, sandbox.run(jobs), strict=True):
        assert result.status == "ok" and Fraction(result.result) == Fraction(p.answer)


def test_compose_program_renames_clashing_parameters(sandbox: Sandbox) -> None:
    program = compose_program(
        Composition(CAKE, CAKE.model_copy(update={"id": "t-cake-2"}), "slices")
    )
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
    assert by_seed["t-apples"] == ["change_numbers", "compose"] * 3
    every = ["change_numbers", "percent_restatement", "compose"] * 2
    assert by_seed["t-sale"] == every and by_seed["t-cake"] == every
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
