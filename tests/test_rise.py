"""RISE error injection: pairs are real, minimal, plausible, confirmed by recomputation, end
on a wrong answer, write numbers like the chosen side, and are deterministic.

The checks recompute the arithmetic independently of generators.rise.steps (a plain regex and
sympy), so a bug in the stage's own parser cannot make its own output look right.
"""

from __future__ import annotations

import difflib
import json
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import sympy
from dataset_checks import read_table

from mathsynth.generators.common.annotations import remove_calculator_annotations
from mathsynth.generators.common.arithmetic import ExpressionError
from mathsynth.generators.rise.edits import ERROR_TYPES
from mathsynth.generators.rise.formatting import NumberStyle, render_like
from mathsynth.generators.rise.offline import RiseErrorInjection
from mathsynth.generators.rise.plausible import MAX_FACTOR, Dropped, check_change
from mathsynth.generators.rise.spans import diff_spans
from mathsynth.generators.rise.steps import evaluate_text, find_equations
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
    (
        "A bus leaves with 50 passengers. At the first stop 12 get off and 30 get on; at the"
        " second stop 8 get off. How many passengers are on the bus?",
        "After the first stop there are 50 - 12 + 30 = 68 passengers.\n"
        "After the second stop there are 68 - 8 = 60 passengers.\n"
        "The answer is 60.",
        "60",
    ),
]


def _problem(question: str, solution: str, answer: str, status: str = "verified") -> Problem:
    verification = Verification(status, "exec", "test")  # type: ignore[arg-type]
    return Problem("test", "hand", "s", question, solution, answer, verification=verification)


def _pairs(seed: int) -> list[PreferencePair]:
    stage = RiseErrorInjection(seed=seed)
    out = list(stage.run(_problem(*p) for p in PROBLEMS))
    return [r for r in out if isinstance(r, PreferencePair)]


_EQ = re.compile(r"([\d.$,%()\s+\-*/x×÷]*\d[\d.$,%()\s+\-*/x×÷]*)=\s*\$?(-?[\d.,/]+\d|\d)")


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


def _final_answer(text: str) -> Fraction:
    match = re.search(r"(?:The answer is|####)\s*\$?(-?[\d.,/]+\d|-?\d)", text.splitlines()[-1])
    assert match, text
    return Fraction(match.group(1).replace(",", ""))


_NUMBER = re.compile(r"\$?\d[\d,]*(?:\.\d+)?%?")


def _numbers(text: str) -> list[str]:
    return _NUMBER.findall(text)


def _unspanned_is_shared(chosen: str, rejected: str, spans: list[dict[str, int]]) -> bool:
    """Every piece of `rejected` outside the spans is a piece of `chosen`, in order: so every
    character that differs lies inside a span, whatever alignment one picks."""
    pieces, pos = [], 0
    for span in spans:
        pieces.append(rejected[pos : span["start"]])
        pos = span["end"]
    pieces.append(rejected[pos:])
    at = 0
    for piece in pieces:
        found = chosen.find(piece, at)
        if found < 0:
            return False
        at = found + len(piece)
    return True


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
        problem = PROBLEMS[[p[1] for p in PROBLEMS].index(pair.chosen_text)]
        assert pair.prompt_text == problem[0]

        # The rejected solution ends on a wrong answer, every one of its steps holds (the
        # error is in what was computed, carried to the end), and the spans cover the change.
        assert pair.provenance["consequence"] == "propagated"
        assert _final_answer(pair.rejected_text) != _final_answer(pair.chosen_text)
        assert _final_answer(pair.rejected_text) != Fraction(problem[2])
        for line in rejected:
            assert all(left == w for left, w in _independent_equations(line)), line
        assert _unspanned_is_shared(pair.chosen_text, pair.rejected_text, pair.spans)
        assert {"start": pair.edit_start, "end": pair.edit_end} != {"start": 0, "end": 0}


def test_every_error_type_occurs() -> None:
    types = {pair.error_type for seed in range(40) for pair in _pairs(seed)}
    assert types == set(ERROR_TYPES)


def test_changed_values_stay_plausible() -> None:
    """Whole numbers stay whole, signs stay, sizes stay within MAX_FACTOR, and rejected texts
    write numbers with the decimals the chosen text shows, across many seeds."""
    for seed in range(40):
        for pair in _pairs(seed):
            old, new = _numbers(pair.chosen_text), _numbers(pair.rejected_text)
            if pair.error_type == "delete_term":
                continue  # one number fewer: compared through the final answer below
            assert len(old) == len(new)
            for a, b in zip(old, new, strict=True):
                places = (len(a.partition(".")[2]), len(b.partition(".")[2]))
                assert places[0] == places[1], (a, b, pair.rejected_text)
                assert a.startswith("$") == b.startswith("$"), (a, b)
                assert a.endswith("%") == b.endswith("%"), (a, b)
            before, after = _final_answer(pair.chosen_text), _final_answer(pair.rejected_text)
            assert after > 0 and before / MAX_FACTOR <= after <= before * MAX_FACTOR
            assert before.denominator != 1 or after.denominator == 1


def test_check_change_reasons() -> None:
    check_change(Fraction(20), Fraction(40))
    check_change(Fraction(20), Fraction(5))
    for old, new, reason in [
        (Fraction(20), Fraction(-4), "negative"),
        (Fraction(20), Fraction(0), "zero"),
        (Fraction(3888), Fraction(388800), "magnitude"),
        (Fraction(1, 2), Fraction(1, 20), "magnitude"),
    ]:
        with pytest.raises(Dropped) as caught:
            check_change(old, new)
        assert caught.value.reason == reason


def test_numbers_are_written_like_the_ones_they_replace() -> None:
    plain = NumberStyle.of("He pays 12.5 dollars for 3 books and 1,200 grams.")
    money = NumberStyle.of("He pays 12.50 dollars, then 3.25 dollars.")
    assert render_like(Fraction(13), "12", plain) == "13"
    assert render_like(Fraction(27, 2), "12.5", plain) == "13.5"
    assert render_like(Fraction(13), "12.50", money) == "13.00"
    assert render_like(Fraction(1234), "999", plain) == "1,234"  # the text groups thousands
    assert render_like(Fraction(1234), "$1,000", money) == "$1,234"
    assert render_like(Fraction(3, 10), "25%", plain) == "30%"
    assert render_like(Fraction(3, 4), "1/2", plain) == "3/4"
    assert render_like(Fraction(7, 10), "7/20", plain) == "7/10"
    assert render_like(Fraction(7, 10), "60/100", plain) == "70/100"
    for value, like, style, reason in [
        (Fraction(13), "12.5", plain, "format_changed"),  # would read "13" or "13.0"
        (Fraction(49, 4), "12.5", plain, "format_changed"),  # 12.25: one decimal more
        (Fraction(25, 2), "12", plain, "not_whole"),  # a count stays whole
        (Fraction(7, 3), "3", plain, "not_whole"),
        (Fraction(2), "1/2", plain, "format_changed"),
    ]:
        with pytest.raises(Dropped) as caught:
            render_like(value, like, style)
        assert caught.value.reason == reason, (value, like)


def _one_pair(question: str, solution: str, answer: str, seeds: range = range(30)) -> list[Any]:
    return [
        RiseErrorInjection(seed=seed).pair_for(_problem(question, solution, answer))
        for seed in seeds
    ]


def test_substitutions_keep_the_unit_and_words_keep_their_number() -> None:
    question = "Tickets cost 15 dollars for adults and 9 dollars for children. 2 adults go."
    solution = "The adults pay 2 * 15 = 30 dollars.\nThe answer is 30."
    pairs = [p for p in _one_pair(question, solution, "30") if isinstance(p, PreferencePair)]
    substituted = [p for p in pairs if p.error_type == "wrong_substitution"]
    assert substituted
    for pair in substituted:
        # 15 dollars may become 9 dollars; the count 2 never becomes a price.
        assert pair.rejected_text.startswith("The adults pay 2 * 9 = 18 dollars."), pair
    question = "A box holds 1 cake and 4 pies. How many desserts?"
    solution = "There are 1 + 4 = 5 desserts.\nThe answer is 5."
    for pair in _one_pair(question, solution, "5"):
        if isinstance(pair, PreferencePair):
            # "1 cake" is never rewritten to "2 cake" (nor a plural number to 1).
            assert not re.search(r"\b1 \w+s\b|\b(?!1\b)\d+ cake\b", pair.rejected_text)


def test_a_given_that_equals_the_answer_still_gets_a_pair() -> None:
    # 9 pens are given away and each friend gets 9: the final line states the result.
    pairs = _one_pair(*PROBLEMS[1], seeds=range(5))
    assert all(isinstance(p, PreferencePair) for p in pairs)
    assert all(_final_answer(p.rejected_text) != 9 for p in pairs)


def test_edits_that_cannot_reach_a_wrong_answer_are_counted_and_rejected() -> None:
    problem = _problem(
        "Ali has 1 bag with 1 apple in it. How many apples does he have?",
        "He has 1 * 1 = 1 apple.\nThe answer is 1.",
        "1",
    )
    stage = RiseErrorInjection(seed=0)
    (_, rejection) = list(stage.run([problem]))
    assert isinstance(rejection, Rejection) and rejection.reason == "no_valid_edit"
    dropped = {k: v for k, v in stage.stats.items() if k.startswith("dropped:")}
    assert dropped and sum(dropped.values()) > 0
    for key, count in dropped.items():
        assert f"{count} {key.removeprefix('dropped:')}" in rejection.detail
    no_answer = _problem("What is 3 * 4?", "3 * 4 = 12", "12")
    (_, missing) = list(stage.run([no_answer]))
    assert isinstance(missing, Rejection) and missing.reason == "no_final_answer"


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


def test_fraction_results_are_carried_into_later_steps() -> None:
    question = "Ali walks 5/2 km in the morning and 1 km at noon. The trail is 5 km long."
    solution = (
        "Ali has walked 5/2 + 1 = 7/2 km.\nHe still needs 5 - 7/2 = 3/2 km.\nThe answer is 3/2."
    )
    pairs = [p for p in _one_pair(question, solution, "3/2") if isinstance(p, PreferencePair)]
    assert pairs
    for pair in pairs:
        assert _final_answer(pair.rejected_text) != Fraction(3, 2)
        for line in pair.rejected_text.split("\n"):
            assert all(left == w for left, w in _independent_equations(line)), line


# -- the whole default build ---------------------------------------------------------------


@pytest.mark.slow
def test_default_build_pairs_end_wrong_and_spans_cover_every_change(default_build: Path) -> None:
    pairs = read_table(default_build, "dpo")
    sft = {r["id"]: r for r in read_table(default_build, "sft")}
    # MATH-style rows (LaTeX answers) get no offline pair: rejected as "exact_answer"
    arithmetic = [r for r in sft.values() if json.loads(r["provenance"])["answer_type"] != "exact"]
    assert len(arithmetic) > 0.8 * len(sft)
    assert len(pairs) > 0.95 * len(arithmetic)
    same_answer = [
        p["id"]
        for p in pairs
        if _final_answer(p["rejected_text"]) == _final_answer(p["chosen_text"])
        or _final_answer(p["rejected_text"]) == Fraction(sft[p["source_id"]]["answer"])
    ]
    assert same_answer == []
    uncovered = [
        p["id"]
        for p in pairs
        if not _unspanned_is_shared(p["chosen_text"], p["rejected_text"], p["spans"])
    ]
    assert uncovered == []
    for pair in pairs:
        assert pair["prompt"] == [{"role": "user", "content": pair["prompt_text"]}]
        assert pair["chosen"] == [{"role": "assistant", "content": pair["chosen_text"]}]
        assert pair["rejected"] == [{"role": "assistant", "content": pair["rejected_text"]}]
        assert pair["edit_start"] < pair["edit_end"]
        assert any(s["start"] <= pair["edit_start"] < s["end"] for s in pair["spans"])
    # Dropped candidates are counted per reason in the catalog's batch stats.
    import duckdb

    con = duckdb.connect(str(default_build / "catalog.duckdb"), read_only=True)
    try:
        stats = [json.loads(s) for (s,) in con.execute("SELECT stats FROM batches").fetchall()]
    finally:
        con.close()
    dropped = {k for s in stats for k in s if k.startswith("rise.dropped:")}
    assert {"rise.dropped:magnitude", "rise.dropped:unit_changed"} <= dropped


@pytest.mark.slow
def test_default_build_rows_are_conversational_for_trl(default_build: Path) -> None:
    sft = read_table(default_build, "sft")[:50]
    dpo = read_table(default_build, "dpo")[:50]
    for row in sft:
        assert [m["role"] for m in row["messages"]] == ["user", "assistant"]
    for row in dpo:
        assert [m["role"] for m in row["prompt"]] == ["user"]
        assert [m["role"] for m in row["chosen"]] == [m["role"] for m in row["rejected"]]
    pytest.importorskip("trl", reason="TRL is not installed (the train extra adds it)")
    from trl.data_utils import is_conversational

    assert all(is_conversational(row) for row in sft)
    assert all(is_conversational(row) for row in dpo)


@pytest.mark.parametrize(
    ("chosen", "rejected", "marked"),
    [
        ("She has 32 + 55 - 16 = 71 left.", "She has 55 - 16 = 39 left.", [" 55", "39"]),
        ("It is 2 * (34 + 21) = 110 m.", "It is 2 * (34) = 68 m.", [")", "68"]),
        ("It holds 1 + 10 + 12 = 23.", "It holds 10 + 12 = 22.", [" 10", "22"]),
        ("It is 4 cm.", "It is 40 cm.", ["40"]),
        ("It is 1200 cm.", "It is 120 cm.", ["120"]),
        # An edit and the steps it is carried into are compared line by line, never a step
        # with another step that reads alike.
        (
            "A got 1/2 * 744 = 372.\nB got 1/2 * 372 = 186.",
            "A got 1/2 * 372 = 186.\nB got 1/2 * 186 = 93.",
            ["372", "186", "186", "93"],
        ),
    ],
)
def test_spans_mark_whole_numbers_where_the_change_is(
    chosen: str, rejected: str, marked: list[str]
) -> None:
    spans = diff_spans(chosen, rejected)
    assert [rejected[s["start"] : s["end"]] for s in spans] == marked
    assert _unspanned_is_shared(chosen, rejected, spans)
