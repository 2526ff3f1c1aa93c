"""MathScale offline: walks over the seeds' concept graph become verified-by-recomputation
problems from one seed or two composed seeds."""

from __future__ import annotations

import re
from collections.abc import Iterator
from fractions import Fraction

import pytest

from mathsynth.generators.common.compose import HANDOVER
from mathsynth.generators.mathscale.concept_graph import ConceptGraph
from mathsynth.generators.mathscale.offline import (
    MathScaleOffline,
    graph_from_seeds,
    walkable,
)
from mathsynth.records import Problem, Rejection
from mathsynth.seeds import Seed, SeedSpec, SeedTask
from mathsynth.variables import decode_variables
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob


def spec(
    seed_id: str,
    concepts: tuple[list[str], list[str]],
    text: tuple[str, str, str],
    answer: int,
    constraint: str | None = None,
    **variables: int,
) -> SeedSpec:
    question, solution, program = text
    return SeedSpec.model_validate(
        {
            "id": seed_id,
            "topics": concepts[0],
            "knowledge_points": concepts[1],
            "difficulty": 1,
            "question": question,
            "solution": solution,
            "program": program,
            "variables": {
                n: {"type": "int", "min": 2, "max": 30, "default": v} for n, v in variables.items()
            },
            "constraints": [constraint] if constraint else [],
            "answer": str(answer),
        }
    )


# Every answer fits every variable range [2, 30] for the defaults, so compositions exist.
PENS = spec(
    "t-pens",
    (["arithmetic", "money"], ["multiplication", "unit price"]),
    (
        "Each pen costs {price} dollars. How much do {count} pens cost?",
        "{price} * {count} = {answer}",
        "def solution(price, count):\n    return price * count\n",
    ),
    12,
    price=3,
    count=4,
)
SHARE = spec(
    "t-share",
    (["arithmetic"], ["division", "equal sharing"]),
    (
        "{total} stickers are shared equally by {kids} kids. How many does each kid get?",
        "{total} / {kids} = {answer}",
        "def solution(total, kids):\n    return total // kids\n",
    ),
    4,
    "total % kids == 0",
    total=12,
    kids=3,
)
SHOP = spec(
    "t-shop",
    (["money"], ["subtraction", "change"]),
    (
        "Ana pays with a {bill} dollar bill for a toy costing {cost} dollars. "
        "How much change does she get?",
        "{bill} - {cost} = {answer}",
        "def solution(bill, cost):\n    return bill - cost\n",
    ),
    13,
    "cost < bill",
    bill=20,
    cost=7,
)
SPECS = [PENS, SHARE, SHOP]
SEEDS = [Seed(id=s.id, question=s.question, answer=s.answer, spec=s) for s in SPECS]


def recompute(seed_id: str, nums: list[int]) -> int:
    a, b = nums
    return {"t-pens": a * b, "t-share": a // b, "t-shop": a - b}[seed_id]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, timeout_s=5.0) as sb:
        yield sb


def ints(text: str) -> list[int]:
    return [int(x) for x in re.findall(r"\d+", text)]


def test_graph_from_seed_tags() -> None:
    graph = graph_from_seeds(SEEDS)
    assert set(graph.members) == {"t-pens", "t-share", "t-shop"}
    assert graph.counts[frozenset((("topic", "arithmetic"), ("topic", "money")))] == 1
    assert graph.counts[frozenset((("topic", "money"), ("kp", "subtraction")))] == 1
    assert "empty" in (walkable(ConceptGraph()) or "")
    assert walkable(graph) is None


def test_walk_problems_are_correct_and_cover_the_walk(sandbox: Sandbox) -> None:
    graph = graph_from_seeds(SEEDS)
    stage = MathScaleOffline(sandbox=sandbox, graph=graph, seeds=SEEDS, seed=11)
    out = list(stage.run(walk_tasks(40)))
    problems = [r for r in out if isinstance(r, Problem)]
    rejected = [r for r in out if isinstance(r, Rejection)]
    # Feeding an answer into `total` rarely keeps `total % kids == 0`: those compositions are
    # rejected with the reason, never emitted with a wrong answer.
    assert {r.reason for r in rejected} <= {"no_compatible_draw"}
    assert len(problems) >= 28 and len(problems) + len(rejected) == 40
    methods = {("partner" in p.provenance) for p in problems}
    assert methods == {True, False}  # both single-seed and composed problems occur
    for p in problems:
        assert p.generator == "mathscale" and p.method == "concept_walk"
        assert p.concepts and set(p.concepts) <= set(p.provenance["walk"])
        assert p.verification.status == "unchecked"
        if "partner" not in p.provenance:
            assert int(p.answer) == recompute(p.seed_id, ints(p.question))
            continue
        part_1, part_2 = p.question.split(f"Let {HANDOVER} be the answer to the question above.")
        handed = recompute(p.seed_id, ints(part_1))
        b_id, slot = p.provenance["partner"], p.provenance["slot"]
        b_spec = next(s for s in SPECS if s.id == b_id)
        # Put the handed-over value back where the slot sits in B's question, then recompute.
        others = iter(ints(part_2))
        slots_in_order = re.findall(r"\{(\w+)", b_spec.question)
        b_nums = [handed if name == slot else next(others) for name in slots_in_order]
        assert int(p.answer) == recompute(b_id, b_nums)
    jobs = [
        SandboxJob(id=p.id, code=p.program or "", kwargs=decode_variables(p.variables))
        for p in problems
    ]
    for p, result in zip(problems, sandbox.run(jobs), strict=True):
        assert result.status == "ok" and Fraction(result.result) == Fraction(p.answer)


def test_deterministic_per_index(sandbox: Sandbox) -> None:
    graph = graph_from_seeds(SEEDS)
    tasks = walk_tasks(12)
    whole = [
        r.id for r in MathScaleOffline(sandbox=sandbox, graph=graph, seeds=SEEDS, seed=4).run(tasks)
    ]
    parts = [
        r.id
        for chunk in (tasks[:5], tasks[5:])
        for r in MathScaleOffline(
            sandbox=sandbox, graph=graph_from_seeds(SEEDS), seeds=SEEDS, seed=4
        ).run(chunk)
    ]
    assert whole == parts
    assert whole != [
        r.id for r in MathScaleOffline(sandbox=sandbox, graph=graph, seeds=SEEDS, seed=5).run(tasks)
    ]


def walk_tasks(n: int) -> list[SeedTask]:
    """`n` concept-walk tasks (a walk is drawn from its index, so no seed)."""
    return [SeedTask(generator="mathscale", seed=None, index=i) for i in range(n)]
