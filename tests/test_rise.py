"""RISE error injection: pairs are real, minimal, confirmed by recomputation, deterministic.

The checks recompute the arithmetic independently of generators.step_arith (a plain regex and
sympy), so a bug in the stage's own parser cannot make its own output look right.
"""

from __future__ import annotations

import difflib
import re
from fractions import Fraction

import pytest
import sympy

from mathsynth.generators.common.annotations import remove_calculator_annotations
from mathsynth.generators.common.arithmetic import ExpressionError
from mathsynth.generators.rise.edits import ERROR_TYPES
from mathsynth.generators.rise.offline import RiseErrorInjection
from mathsynth.generators.rise.spans import diff_spans
from mathsynth.generators.rise.steps import evaluate_text, find_equations, render_number
from mathsynth.records import (
    FormalStatement,
    PreferencePair,
    Problem,
    Rejection,
    Verification,
)

VERIFIED = Verification("verified", "exec", "test")

PROBLEMS = [
    (
        "A coat costs $80 and is 25% off. Tax adds $5. How much does Mia pay?",
        "The discount is 80 * 25 / 100 = 20 dollars.\n"
        "The sale price is 80 - 20 = 60 dollars.\n"
        "With tax she pays 60 + 5 = 65 dollars.\n"
        "The answer is 65.",
        "65",
    ),
    (
        "Tom has 3 boxes of 12 pens and gives away 9 pens. He shares the rest among 3 friends."
        " How many pens does each friend get?",
        "Tom has 3 x 12 = 36 pens.\n"
        "After giving some away he has 36 - 9 = 27 pens.\n"
        "Each friend gets 27 / 3 = 9 pens.\n"
        "The answer is 9.",
        "9",
    ),
    (
        "A farm has 14 cows, 23 sheep and 8 goats. Each animal eats 2.5 kg of hay a day."
        " How much hay do they eat in a week?",
        "There are 14 + 23 + 8 = 45 animals.\n"
        "They eat 45 * 2.5 = 112.5 kg a day.\n"
        "In a week they eat 112.5 * 7 = 787.5 kg.\n"
        "The answer is 787.5.",
        "787.5",
    ),
    (
        "Ana reads 120 pages in 4 days and then 30 more pages. How many pages per day did she"
        " read in the first 4 days, and how many in total?",
        "She reads (120 - 30) / 4 = 22.5 pages a day.\n"
        "In total she reads 120 + 30 = 150 pages.\n"
        "#### 150",
        "150",
    ),
]


def _problem(question: str, solution: str, answer: str, status: str = "verified") -> Problem:
    verification = Verification(status, "exec", "test")  # type: ignore[arg-type]
    return Problem("test", "hand", "s", question, solution, answer, verification=verification)


def _pairs(seed: int) -> list[PreferencePair]:
    stage = RiseErrorInjection(seed=seed)
    out = list(stage.run(_problem(*p) for p in PROBLEMS))
    return [r for r in out if isinstance(r, PreferencePair)]


_EQ = re.compile(r"([\d.$,%()\s+\-*/x×÷]*\d[\d.$,%()\s+\-*/x×÷]*)=\s*\$?(-?[\d.,]+\d|\d)")


def _independent_equations(line: str) -> list[tuple[sympy.Rational, sympy.Rational]]:
    """(left value, written value) of each `expr = number` in a line, via sympy."""
    found = []
    for expr, value in _EQ.findall(line):
        expr = expr.strip().replace("$", "").replace(",", "").replace("x", "*")
        expr = expr.replace("×", "*").replace("÷", "/").replace("%", "/100")
        if not re.search(r"\d\s*[-+*/]\s*[\d(]", expr):
            continue
        left = sympy.sympify(expr, rational=True)
        found.append((left, sympy.Rational(value.replace(",", ""))))
    return found


def _final_answer(text: str) -> str:
    match = re.search(r"(?:The answer is|####)\s*\$?([\d.,]+\d|\d)", text.splitlines()[-1])
    assert match, text
    return match.group(1)


@pytest.mark.parametrize("seed", range(12))
def test_pairs_are_minimal_and_confirmed_wrong(seed: int) -> None:
    pairs = _pairs(seed)
    assert len(pairs) == len(PROBLEMS)
    for pair in pairs:
        chosen, rejected = pair.chosen_text.split("\n"), pair.rejected_text.split("\n")
        assert pair.rejected_text != pair.chosen_text
        assert chosen[: pair.step_index] == rejected[: pair.step_index]
        assert pair.chosen_text[: pair.edit_start] == pair.rejected_text[: pair.edit_start]
        line_start = sum(len(line) + 1 for line in rejected[: pair.step_index])
        edited_line = rejected[pair.step_index]
        assert line_start <= pair.edit_start < pair.edit_end <= line_start + len(edited_line)
        span = pair.rejected_text[pair.edit_start : pair.edit_end]
        assert span != pair.chosen_text[pair.edit_start : pair.edit_end]
        assert edited_line[pair.edit_start - line_start :].startswith(span)
        assert pair.provenance["edited_step"] == edited_line
        assert pair.verification.status == "verified"
        assert pair.verification.checker == "recompute"
        assert pair.prompt_text == PROBLEMS[[p[1] for p in PROBLEMS].index(pair.chosen_text)][0]

        step_false = any(left != written for left, written in _independent_equations(edited_line))
        answer_changed = _final_answer(pair.rejected_text) != _final_answer(pair.chosen_text)
        assert step_false or answer_changed
        if pair.provenance["consequence"] == "propagated":
            # Every equation of the rejected solution holds; only the answer is wrong.
            assert answer_changed
            for line in rejected:
                assert all(left == w for left, w in _independent_equations(line)), line
        else:
            assert step_false
            assert rejected[pair.step_index + 1 :] == chosen[pair.step_index + 1 :]


def test_every_error_type_occurs() -> None:
    types = {pair.error_type for seed in range(40) for pair in _pairs(seed)}
    assert types == set(ERROR_TYPES)


def test_deterministic_per_seed_and_record() -> None:
    assert [p.to_row() for p in _pairs(7)] == [p.to_row() for p in _pairs(7)]
    variants = {tuple(p.rejected_text for p in _pairs(seed)) for seed in range(6)}
    assert len(variants) > 1
    # A record's pair does not depend on its position in the batch.
    stage = RiseErrorInjection(seed=7)
    alone = stage.pair_for(_problem(*PROBLEMS[2]))
    assert isinstance(alone, PreferencePair)
    assert alone.to_row() == _pairs(7)[2].to_row()


def test_only_verified_problems_produce_pairs_and_everything_passes_through() -> None:
    others = [
        _problem(*PROBLEMS[0], status="unchecked"),
        _problem(*PROBLEMS[1], status="failed"),
        PreferencePair("x", "p", "c", "r", "change_number", 0, 1, 0),
        Rejection("exec", "timeout", "slow", {"id": "y"}),
        FormalStatement("z", "informal", "import Mathlib", "theorem t : 1 = 1 := rfl"),
    ]
    verified = _problem(*PROBLEMS[1])
    out = list(RiseErrorInjection(seed=0).run([*others, verified]))
    assert out[: len(others)] == others
    assert out[len(others)] is verified
    assert len(out) == len(others) + 2
    assert isinstance(out[-1], PreferencePair) and out[-1].source_id == verified.id


def test_solution_without_arithmetic_is_rejected_with_reason() -> None:
    problem = _problem("What is 2 + 2?", "Two and two make four.\nThe answer is 4.", "4")
    stage = RiseErrorInjection(seed=0)
    (_, rejection) = list(stage.run([problem]))
    assert isinstance(rejection, Rejection)
    assert (rejection.stage, rejection.reason) == ("rise", "no_equations")
    assert rejection.record["id"] == problem.id
    assert stage.stats["rejected:no_equations"] == 1


def test_calculator_annotations_are_removed_from_both_sides() -> None:
    solution = (
        "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold <<48+24=72>>72 clips altogether.\n"
        "#### 72"
    )
    problem = _problem(
        "Natalia sold clips to 48 friends in April, half as many in May.", solution, "72"
    )
    pair = RiseErrorInjection(seed=3).pair_for(problem)
    assert isinstance(pair, PreferencePair)
    assert pair.chosen_text == (
        "Natalia sold 48/2 = 24 clips in May.\nNatalia sold 48+24 = 72 clips altogether.\n#### 72"
    )
    assert "<<" not in pair.rejected_text
    assert pair.provenance["calculator_annotations_removed"] is True


def test_units_between_numbers_are_understood() -> None:
    (eq,) = find_equations("Anna gets 14 pieces/house * 60 houses = 840 pieces")
    assert eq.computed() == 840 and eq.is_exact
    question = "Anna visits 60 houses and gets 14 pieces per house; Billy gets 825. Difference?"
    solution = (
        "Anna gets 14 pieces/house * 60 houses = 840 pieces\n"
        "The difference is 840 pieces - 825 pieces = 15 pieces\n"
        "The answer is 15."
    )
    for seed in range(5):
        pair = RiseErrorInjection(seed=seed).pair_for(_problem(question, solution, "15"))
        assert isinstance(pair, PreferencePair)
        assert (
            pair.rejected_text.split("\n")[: pair.step_index]
            == solution.split("\n")[: pair.step_index]
        )


def test_step_arithmetic_is_exact_and_refuses_code() -> None:
    assert evaluate_text("0.1 + 0.2") == Fraction(3, 10)
    assert evaluate_text("(3 + 4) × 2 ÷ 7") == 2
    assert evaluate_text("1,200 x 25%") == 300
    with pytest.raises(ExpressionError):
        evaluate_text("__import__('os').system('true')")
    with pytest.raises(ZeroDivisionError):
        evaluate_text("5 / (2 - 2)")
    texts = [
        ("".join(t.text for t in eq.tokens), eq.result.text)
        for eq in find_equations("(so 4 + 5 = 9) and 20 + 30 = 50 + 10 = 60, box 5 = 5")
    ]
    assert texts == [("4+5", "9"), ("20+30", "50"), ("50+10", "60")]


def test_render_number_keeps_the_notation() -> None:
    assert render_number(Fraction(13), "12.50") == "13.00"
    assert render_number(Fraction(1234), "$1,000") == "$1,234"
    assert render_number(Fraction(3, 10), "25%") == "30%"
    assert render_number(Fraction(3, 4), "1/2") == "3/4"
    assert render_number(Fraction(7, 3), "3") is None


def test_annotation_without_written_expression_becomes_an_equation() -> None:
    text = remove_calculator_annotations("He has <<5*3=15>>15 apples and $<<2+3=5>>5.")
    assert text == "He has 5*3 = 15 apples and $2+3 = 5."


@pytest.mark.parametrize(
    ("chosen", "rejected"),
    [
        ("3 * 4 = 12\nThe answer is 12.", "3 * 5 = 15\nThe answer is 15."),
        ("a + b = 10 apples", "a - b = 10 apples"),
        ("48 / 2 = 24 and 24 + 6 = 30", "48 / 2 = 24 and 24 = 24"),  # a deletion
        ("The answer is 1,200.", "The answer is 1,250."),
        ("x", "x plus more words at the end"),
        ("keep the end 7", "keep the end"),  # deleted at the very end
    ],
)
def test_spans_cover_every_changed_character(chosen: str, rejected: str) -> None:
    spans = diff_spans(chosen, rejected)
    covered = {i for s in spans for i in range(s["start"], s["end"])}
    matcher = difflib.SequenceMatcher(None, chosen, rejected, autojunk=False)
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            assert set(range(j1, j2)) <= covered
            if j1 == j2:  # a deletion is marked by the token where it happened
                assert any(s["start"] <= j1 <= s["end"] for s in spans)
    assert all(a["end"] < b["start"] for a, b in zip(spans, spans[1:], strict=False))
