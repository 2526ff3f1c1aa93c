"""The seed schema's parts one by one: inflection, kinds and units, pools, template fields,
plausibility, the static rules and the seed lint's command line, exact (LaTeX) answers."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import pytest

from mathsynth.generators.common.instantiate import Draft, render_variant, sandbox_job
from mathsynth.generators.common.pools import PoolError, bundled_pools, draw_roles, parse_pool_file
from mathsynth.generators.common.templates import fill
from mathsynth.generators.seeds.checks import static_problems
from mathsynth.generators.seeds.library import load_library, parse_library_file
from mathsynth.inflection import agree, article, one_plural
from mathsynth.numbers import answer_type_of, format_answer
from mathsynth.quantities import QuantityError, check_unit, conversion
from mathsynth.records import Problem, Rejection
from mathsynth.seeds import SeedSpec
from mathsynth.verifiers.answers import AnswerChecker
from mathsynth.verifiers.exec_check import ExecVerifier
from mathsynth.verifiers.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
LINT = [sys.executable, "-m", "mathsynth.generators.seeds.lint"]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, timeout_s=10.0) as sb:
        yield sb


# -- inflection -------------------------------------------------------------------------------


def test_nouns_agree_with_the_value() -> None:
    assert agree("apple", 1) == "apple" and agree("apple", 2) == "apples"
    assert agree("person", 3) == "people" and agree("box", 0) == "boxes"
    assert agree("cup", Fraction(3, 4)) == "cup" and agree("cup", Fraction(13, 6)) == "cups"
    assert agree("hour", 2.5) == "hours" and agree("hour", 1.0) == "hour"
    assert agree("slice of cake", 4) == "slices of cake"
    # the verbs a count governs: "1 glass is left", "3 glasses are left"
    assert [agree(v, 1) for v in ("is", "was", "has", "goes", "remains")] == [
        "is",
        "was",
        "has",
        "goes",
        "remains",
    ]
    assert [agree(v, 3) for v in ("is", "was", "has", "goes", "remains")] == [
        "are",
        "were",
        "have",
        "go",
        "remain",
    ]
    juice = next(s for s in load_library() if s.id == "fractions-juice-glasses")
    for left, said in ((1, "1 glass is left"), (3, "3 glasses are left")):
        assert fill("{left:n} {left|is} left", {"left": left}, kinds=juice.quantity) == said


def test_articles_follow_how_the_number_is_said() -> None:
    assert [article(w) for w in ("8", "11", "18", "80", "18,000", "11500")] == ["an"] * 6
    assert [article(w) for w in ("1", "12", "110", "1,100", "100", "7")] == ["a"] * 6
    assert article("hour") == "an" and article("apple") == "an" and article("unicorn") == "a"


def test_one_plural_finds_only_real_plurals() -> None:
    text = "1 hours, 1 boxes, 1 people; 1 bus, 1 hour, 1 of them, 1.5 hours, 21 cups, 11 cats"
    assert one_plural(text) == ["1 hours", "1 boxes", "1 people"]


# -- kinds, units, answers --------------------------------------------------------------------


def test_units_are_a_closed_vocabulary() -> None:
    assert check_unit("money", None, None) == "dollar"
    assert check_unit("count", None, "apple") == "apple"
    with pytest.raises(QuantityError, match="unknown length unit 'meters'"):
        check_unit("length", "meters", None)
    with pytest.raises(QuantityError, match="a count needs `noun`"):
        check_unit("count", None, None)
    with pytest.raises(QuantityError, match="unknown kind 'distance'"):
        check_unit("distance", "meter", None)
    assert conversion("time", "hour", "minute") == 60
    assert conversion("length", "meter", "kilometer") == Fraction(1, 1000)
    assert conversion("length", "meter", "foot") is None  # other system: never implicit
    assert conversion("time", "month", "day") is None


def test_one_format_per_answer_type() -> None:
    assert format_answer(60.0, "money") == "60.00" and format_answer(12.5, "money") == "12.50"
    assert format_answer(12.5, "decimal") == "12.5" and format_answer(60.0, "int") == "60"
    assert format_answer(Fraction(-7, 2), "fraction") == "-7/2"
    assert format_answer(Fraction(3, 4), "exact") == "\\frac{3}{4}"
    assert format_answer(12.345, "money") is None
    assert [answer_type_of(a) for a in ("12", "12.50", "12.5", "3/4", "2 \\sqrt{3}")] == [
        "int",
        "money",
        "decimal",
        "fraction",
        "exact",
    ]


# -- pools and templates ----------------------------------------------------------------------


def test_pool_files_are_checked() -> None:
    with pytest.raises(PoolError, match="pronoun must be one of"):
        parse_pool_file("x.yaml", "people2: {kind: person, items: [Ana/it, Bo/he]}")
    with pytest.raises(PoolError, match="at least 2 items"):
        parse_pool_file("x.yaml", "fruit2: {kind: thing, items: [apple]}")
    with pytest.raises(PoolError, match="repeated items"):
        parse_pool_file("x.yaml", "fruit2: {kind: thing, items: [apple, apple]}")
    pools = bundled_pools()
    assert len(pools["people"].items) >= 40
    import random

    roles = draw_roles({"a": "people", "b": "people"}, random.Random(1))
    assert roles["a"].text != roles["b"].text


def test_fields_render_kinds_nouns_and_pronouns() -> None:
    spec = SeedSpec.model_validate(
        {
            "id": "t",
            "topics": ["x"],
            "knowledge_points": ["y"],
            "difficulty": 1,
            "question": "q {n}",
            "solution": "s",
            "program": "def solution(n, price, pct):\n    return n\n",
            "variables": {
                "n": {"kind": "count", "noun": "{fruit}", "min": 1, "max": 9, "default": 1},
                "price": {"kind": "money", "min": 1, "max": 9, "default": 3},
                "pct": {"kind": "percent", "min": 1, "max": 9, "default": 5},
            },
            "answer": "1",
        }
    )
    pools = bundled_pools()
    roles = {"who": pools["people"].items[0], "fruit": pools["fruits"].items[0]}  # Maya, apple
    text = (
        "{who.They} buys {n:n} for {price:n} at {pct:n} off; {n} {n|box}, {n|fruit}, "
        "{who.their} {fruit.a}, {n|a} {n}-day trip, $\\frac{{n}}{2}$ and \\sqrt{x}."
    )
    for n, want in (
        (1, "1 apple for $3.00 at 5% off; 1 box, apple"),
        (8, "8 apples for $3.00 at 5% off; 8 boxes, apples"),
    ):
        out = fill(text, {"n": n, "price": 3, "pct": 5}, kinds=spec.quantity, roles=roles)
        assert out.startswith(f"She buys {want}"), out
        article_n = "an" if n == 8 else "a"
        assert out.endswith(
            f"her an apple, {article_n} {n}-day trip, $\\frac{{{n}}}{{2}}$ and \\sqrt{{x}}."
        )
    with pytest.raises(KeyError, match="missing"):
        fill("{missing} apples", {})


def test_a_step_never_repeats_a_side_of_its_equation() -> None:
    from mathsynth.generators.common.templates import drop_repeated_sides

    assert (
        drop_repeated_sides(r"So $d = \frac{1}{12} = \frac{1}{12}$.") == r"So $d = \frac{1}{12}$."
    )
    assert drop_repeated_sides(r"$K = \frac{\sqrt{15} }{4} = \frac{\sqrt{15}}{4}$") == (
        r"$K = \frac{\sqrt{15} }{4}$"
    )
    # a step that simplifies is kept whole; `=` inside braces is not a side
    kept = r"$d = \frac{4}{6} = \frac{2}{3}$ and $a = \frac{x=1}{2} = b$"
    assert drop_repeated_sides(kept) == kept


def test_chess_club_of_480_is_rejected_as_implausible(sandbox: Sandbox) -> None:
    club = next(s for s in load_library() if s.id == "ratios-club-members")
    values = {"b": 2, "g": 7, "boys": 48}  # 48 boys, 168 girls: a 216-member school club
    (result,) = sandbox.run([sandbox_job("x", club, values)])
    outcome = render_variant(club, values, result)
    assert outcome[0] == "implausible_answer" and "outside its range" in outcome[1]
    sane = {"b": 3, "g": 4, "boys": 24}
    (result,) = sandbox.run([sandbox_job("y", club, sane)])
    draft = render_variant(club, sane, result)
    assert isinstance(draft, Draft) and draft.answer == "56"


# -- the static rules and the lint ------------------------------------------------------------

BAD_SEED = """
- id: bad-seed
  topics: [arithmetic]
  knowledge_points: [addition]
  difficulty: 1
  pools: {who: people, thing: no_such_pool}
  questions:
    - "{who} has {n} apples. {who.hers} eats {k}. How many are left?"
    - "{who} has {n} apples. How many are left after eating {k}?"
  solution: |-
    {who} has {n} - {k} = {left:n} left.
  program: |
    def solution(n, k):
        left = n - k
        return left
  variables:
    n: {kind: count, noun: apple, min: 1, max: 9, default: 5}
    k: {min: 1, max: 9, default: 2}
  answer: {value: "3", type: money, kind: count, noun: apple, range: [5, 9]}
"""


def test_static_rules_name_every_problem() -> None:
    (spec,) = parse_library_file("bad.yaml", BAD_SEED, bundled_pools(), strict=False)
    problems = "\n".join(static_problems(spec, bundled_pools()))
    for expected in (
        "needs at least 3 phrasings",
        "variable k: no `kind`",
        "a count answer has type int",
        "default answer 3 is outside range",
        "unknown pool 'no_such_pool'",
        "entries have no 'hers'",
        "declare the kind of left in `quantities`",
        "questions[1] repeats a sentence of questions[0]",
    ):
        assert expected in problems, (expected, problems)


LINKED_SEED = """
- id: linked-seed
  topics: [arithmetic]
  knowledge_points: [addition]
  difficulty: 1
  pools: {who: people}
  questions:
    - "Of the {n:n} in the shed, {who} sells {k}. How many are left?"
    - "{who} counts the barn's {n:n} and sells {k}. How many are left?"
    - "{who} has all {n:n} and sells {k}. How many are left?"
    - "{who} fills a {k}-liter jug from {n:n}. How many are left?"
    - "{who} fills {k|a} {k}-liter can from {n:n}. What remains?"
    - "{who} sells {k:n} ripe apples from {n:n}. What is still unsold?"
  solution: |-
    {who} has {n} - {k} = {left:n} left.
  program: |
    def solution(n, k):
        left = n - k
        return left
  variables:
    n: {kind: count, noun: apple, min: 10, max: 19, default: 15, link: true}
    k: {kind: count, noun: apple, min: 1, max: 9, default: 2}
  quantities:
    left: {kind: count, noun: apple}
  answer: {value: "13", type: int, kind: count, noun: apple, range: [1, 18]}
"""


def test_linkable_slots_articles_and_nouns_read_right() -> None:
    """A linked phrase ("the apples Maya picks") brings its own determiner, so "Of the {n:n}"
    would read "Of the the apples ..."; a fixed "a" before a number reads "a 8-liter jug"; a
    noun after `{x:n}` says it twice."""
    (spec,) = parse_library_file("linked.yaml", LINKED_SEED, bundled_pools(), strict=False)
    problems = static_problems(spec, bundled_pools())
    determiner = [p for p in problems if "follows a determiner or a possessive" in p]
    assert [p.split(":")[0] for p in determiner] == ["questions[0]", "questions[1]"]
    # "{k:n} ripe apples" reads "2 apples ripe apples"
    assert [p for p in problems if "say it again" in p] == [
        "questions[5]: {k:n} already says its noun, and the next words say it again"
    ]
    fixed = [p for p in problems if "a fixed a/an before" in p]
    assert fixed == [
        "questions[3]: a fixed a/an before {k}: write {k|a} so it agrees with the number"
        " (an 8, a 9)"
    ]


def test_loader_refuses_a_broken_seed() -> None:
    from mathsynth.errors import ConfigError

    with pytest.raises(ConfigError, match="seed library bad.yaml: seed bad-seed: needs at least"):
        parse_library_file("bad.yaml", BAD_SEED, bundled_pools())


def test_lint_command_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BAD_SEED)
    plural = tmp_path / "plural.yaml"
    plural.write_text(
        textwrap.dedent(
            """
            - id: plural-seed
              topics: [arithmetic]
              knowledge_points: [addition]
              difficulty: 1
              questions:
                - "A box holds {n} apples. How many apples are in two boxes?"
                - "Two boxes each hold {n} apples; count the apples in them."
                - "What is the number of apples in a pair of boxes of {n} apples?"
              solution: |-
                Two boxes hold 2 * {n} = {total} apples.
              program: |
                def solution(n):
                    total = 2 * n
                    return total
              variables:
                n: {kind: count, noun: apple, min: 1, max: 3, default: 1}
              answer: {value: "2", type: int, kind: count, noun: apple, range: [2, 6]}
            """
        )
    )
    proc = subprocess.run([*LINT, str(bad), str(plural)], capture_output=True, text=True)
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "bad-seed: FAIL" in proc.stdout and "variable k: no `kind`" in proc.stdout
    assert "plural-seed: FAIL" in proc.stdout and "says '1 apples'" in proc.stdout, proc.stdout
    good = ROOT / "generators/seeds/library/ratios.yaml"
    proc = subprocess.run([*LINT, "--draws", "10", str(good)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
    missing = subprocess.run([*LINT, str(tmp_path / "nope.yaml")], capture_output=True, text=True)
    assert missing.returncode == 2 and "no such file" in missing.stderr


# -- exact answers ----------------------------------------------------------------------------


def test_exact_answers_are_checked_by_execution_and_the_answer_checker(sandbox: Sandbox) -> None:
    program = "import sympy\n\ndef solution(n):\n    return 2 * sympy.sqrt(n)\n"

    def row(answer: str, question: str) -> Problem:
        return Problem(
            generator="g",
            method="m",
            seed_id="s",
            question=question,
            solution="s",
            answer=answer,
            program=program,
            variables={"n": 3},
        )

    with AnswerChecker(workers=1) as checker:
        stage = ExecVerifier(sandbox=sandbox, checker=lambda: checker)
        ok, wrong = list(stage.run([row("2 \\sqrt{3}", "q1"), row("2 \\sqrt{2}", "q2")]))
    assert isinstance(ok, Problem) and ok.verification.checker == "exec+answer_check"
    assert "math-verify: equivalent" in ok.verification.detail
    assert isinstance(wrong, Rejection) and wrong.reason == "exec_mismatch"
    (unchecked,) = ExecVerifier(sandbox=sandbox).run([row("2 \\sqrt{3}", "q3")])
    assert isinstance(unchecked, Rejection) and unchecked.reason == "exec_uncomparable"
