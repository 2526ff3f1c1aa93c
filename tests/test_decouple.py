"""Annotation-driven decoupling on problems written for these tests.

The key property: for every variant the sandbox accepts, the program's answer equals an
independent recomputation from the numbers printed in the variant's question.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Iterator
from fractions import Fraction

import pytest

from mathsynth.generators.common.sampling import sample_values
from mathsynth.generators.common.templates import fill
from mathsynth.generators.infinitymath.decouple import DecoupleFailure, decouple
from mathsynth.generators.infinitymath.decouple_check import decouple_many
from mathsynth.numbers import format_answer, is_whole
from mathsynth.seeds import Seed, SeedSpec
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob

Recompute = Callable[[list[Fraction]], Fraction]

# (question, annotated solution, answer from the numbers printed in the question, in order)
PROBLEMS: dict[str, tuple[str, str, Recompute]] = {
    "markers": (
        "Mia buys 4 packs of 6 markers. She gives away 5 markers. How many markers are left?",
        "Mia has 4*6 = <<4*6=24>>24 markers.\nShe has 24-5 = <<24-5=19>>19 markers left.\n#### 19",
        lambda n: n[0] * n[1] - n[2],
    ),
    "sale": (
        "A jacket costs $80. It is on sale for 25% off. What is the sale price?",
        "The discount is 80*25/100 = $<<80*25/100=20>>20.\n"
        "The sale price is 80-20 = $<<80-20=60>>60.\n#### 60",
        lambda n: n[0] * (1 - n[1] / 100),
    ),
    "stickers": (
        "Ann has seven stickers. Ben has twice as many stickers as Ann. "
        "How many stickers do they have together?",
        "Ben has 7*2 = <<7*2=14>>14 stickers.\nTogether they have 7+14 = <<7+14=21>>21.\n#### 21",
        lambda n: n[0] + n[0] * n[1],
    ),
    "eggs": (
        "A farmer has 48 eggs and sells half of them. Then he buys a dozen more. "
        "How many eggs does he have now?",
        "He has 48/2 = <<48/2=24>>24 eggs left.\nThen he has 24+12 = <<24+12=36>>36 eggs.\n#### 36",
        lambda n: n[0] / 2 + n[1],
    ),
    "shop": (
        "A TV costs $1,200 and a speaker costs $45.50. How much do both cost together?",
        "Both cost 1200+45.50 = $<<1200+45.50=1245.50>>1245.50.\n#### 1245.50",
        lambda n: n[0] + n[1],
    ),
    "cars": (
        "There are 3 red cars and 3 blue cars. Each car has 4 wheels. How many wheels are there?",
        "There are 3+3 = <<3+3=6>>6 cars.\nThey have 6*4 = <<6*4=24>>24 wheels.\n#### 24",
        lambda n: (n[0] + n[1]) * n[2],
    ),
    "reading": (
        "Sara reads 2 pages per minute. How many pages does she read in 3 hours?",
        "In an hour she reads 2*60 = <<2*60=120>>120 pages.\n"
        "In 3 hours she reads 120*3 = <<120*3=360>>360 pages.\n#### 360",
        lambda n: n[0] * 60 * n[1],
    ),
    "same_value_twice": (  # 200 is both the weekend ride and step 2's result
        "Tim bikes 20 miles each way to work on 5 days and rides 200 miles on the weekend. "
        "How many miles does he bike in a week?",
        "Each day he bikes 20*2 = <<20*2=40>>40 miles.\nFor work he bikes 40*5 = <<40*5=200>>200.\n"
        "In all he bikes 200+200 = <<200+200=400>>400 miles.\n#### 400",
        lambda n: n[0] * 2 * n[1] + n[2],
    ),
    "unannotated_last_step": (
        "Ann spends $75 on 5 shirts at $7 each and some hats. The 4 hats cost the same. "
        "How much is one hat?",
        "The shirts cost 5*7 = $<<5*7=35>>35.\nThe hats cost 75-35 = $<<75-35=40>>40.\n"
        "One hat costs 40/4 = $10.\n#### 10",
        lambda n: (n[0] - n[1] * n[2]) / n[3],
    ),
}


def seed_of(key: str, question: str, solution: str) -> Seed:
    answer = solution.rsplit("####", 1)[1].strip()
    return Seed(id=key, question=question, answer=answer, solution=solution)


def numbers_in(text: str) -> list[Fraction]:
    return [Fraction(m.replace(",", "")) for m in re.findall(r"\d[\d,]*(?:\.\d+)?", text)]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, timeout_s=5.0) as sb:
        yield sb


@pytest.fixture(scope="module")
def specs(sandbox: Sandbox) -> dict[str, SeedSpec | DecoupleFailure]:
    seeds = [seed_of(key, q, s) for key, (q, s, _) in PROBLEMS.items()]
    return {seed.id: outcome for seed, outcome in decouple_many(seeds, sandbox)}


@pytest.mark.parametrize("key", list(PROBLEMS))
def test_variants_match_an_independent_recomputation(
    key: str, specs: dict[str, SeedSpec | DecoupleFailure], sandbox: Sandbox
) -> None:
    spec = specs[key]
    assert isinstance(spec, SeedSpec), spec
    question, _, recompute = PROBLEMS[key]
    original = fill(spec.question, spec.default_values())
    assert recompute(numbers_in(original)) == Fraction(spec.answer), original
    rng = random.Random(7)
    draws = [sample_values(spec, rng) for _ in range(40)]
    jobs = [
        SandboxJob(
            id=str(i), code=spec.program, kwargs=v, capture_locals=True, checks=spec.constraints
        )
        for i, v in enumerate(draws)
    ]
    accepted = 0
    for values, result in zip(draws, sandbox.run(jobs), strict=True):
        assert result.status == "ok", result.error
        locals_ = result.locals or {}
        if result.failed_checks or not all(is_whole(locals_[name]) for name in spec.whole):
            continue
        answer = format_answer(result.result, spec.answer_type)
        if answer is None:
            continue
        text = fill(spec.question, values)
        assert Fraction(answer) == recompute(numbers_in(text)), text
        solution = fill(spec.solution, {**locals_, **values, "answer": answer})
        assert "{" not in solution and answer in solution.splitlines()[-1]
        accepted += 1
    assert accepted >= 3


def test_program_template_and_constraints_read_like_the_original() -> None:
    q, s, _ = PROBLEMS["sale"]
    spec = decouple(seed_of("sale", q, s))
    assert isinstance(spec, SeedSpec)
    assert (
        spec.question
        == "A jacket costs ${n}. It is on sale for {percent_off}% off. What is the sale price?"
    )
    assert spec.solution.splitlines() == [
        "The discount is {n} * {percent_off} / 100 = ${step1}.",
        "The sale price is {n} - {step1} = ${step2}.",
    ]
    assert "step1 = n * percent_off / 100" in spec.program
    assert set(spec.whole) == {"step1", "step2"}
    assert "0 <= percent_off <= 100" in spec.constraints and "step2 > 0" in spec.constraints
    assert spec.variables["percent_off"].max == 50 and spec.answer_type == "int"


def test_repeated_numbers_are_tied_to_one_variable() -> None:
    q, s, _ = PROBLEMS["cars"]
    spec = decouple(seed_of("cars", q, s))
    assert isinstance(spec, SeedSpec)
    assert spec.question.count("{red}") == 2 and list(spec.variables) == ["red", "wheels"]


def test_half_stays_fixed_because_solutions_rely_on_it() -> None:
    q, s, _ = PROBLEMS["eggs"]
    spec = decouple(seed_of("eggs", q, s))
    assert isinstance(spec, SeedSpec)
    assert "sells half of them" in spec.question and "buys {n} more" in spec.question


@pytest.mark.parametrize(
    ("question", "solution", "reason"),
    [
        (  # 3 = 60 / 20 was worked out in the writer's head
            "Joy reads 8 pages in 20 minutes. How many pages does she read in an hour?",
            "There are 3 sets of 20 minutes in an hour.\n"
            "She reads 8*3 = <<8*3=24>>24 pages.\n#### 24",
            "unexplained_number",
        ),
        (
            "Tom has 3 boxes with 4 pens each. How many pens?",
            "He has 3*4 = <<3*4=12>>12 pens.\n#### 13",
            "answer_not_computed",
        ),
        (
            "Tom has 3 boxes with 4 pens each. How many pens?",
            "He has 3*4 = <<3*4=13>>13 pens.\n#### 13",
            "annotation_mismatch",
        ),
        (  # is 60 the pages or the minutes in an hour?
            "Kim reads 60 pages in 90 minutes. How many hours does she read?",
            "She reads 90/60 = <<90/60=1.5>>1.5 hours.\n#### 1.5",
            "ambiguous_number",
        ),
        (
            "Tom has 3 boxes with 4 pens each. How many pens?",
            "He has twelve pens.\n#### 12",
            "no_annotations",
        ),
        ("Tom has 3 boxes. How many?", "He has 3 boxes.\n#### three", "bad_gold_answer"),
    ],
)
def test_seeds_that_cannot_be_decoupled_say_why(question: str, solution: str, reason: str) -> None:
    outcome = decouple(seed_of("x", question, solution))
    assert isinstance(outcome, DecoupleFailure) and outcome.reason == reason, outcome


def test_zero_intermediates_keep_a_non_negative_constraint(sandbox: Sandbox) -> None:
    seed = seed_of(
        "zero",
        "Liz has 7 apples and eats 7 apples. She also has 10 pears. How many fruits are left?",
        "She has 7-7 = <<7-7=0>>0 apples.\nShe has 10+0 = <<10+0=10>>10 fruits.\n#### 10",
    )
    ((_, outcome),) = list(decouple_many([seed], sandbox))
    assert isinstance(outcome, SeedSpec), outcome
    assert outcome.constraints[0] == "step1 >= 0" and "step2 > 0" in outcome.constraints


def test_no_satisfying_draw_means_not_decoupled(sandbox: Sandbox) -> None:
    q, s, _ = PROBLEMS["markers"]
    ((_, outcome),) = list(decouple_many([seed_of("m", q, s)], sandbox, attempts=0))
    assert isinstance(outcome, DecoupleFailure) and outcome.reason == "unsatisfiable_constraints"


def test_decouple_many_keeps_order_across_batches(sandbox: Sandbox) -> None:
    seeds = [seed_of(f"{k}-{i}", q, s) for i in range(3) for k, (q, s, _) in PROBLEMS.items()]
    out = list(decouple_many(seeds, sandbox, batch_size=5))
    assert [seed.id for seed, _ in out] == [seed.id for seed in seeds]
    assert all(isinstance(o, SeedSpec) for _, o in out)
