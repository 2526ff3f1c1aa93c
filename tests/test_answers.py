"""AnswerChecker: exact fast path, math-verify regressions, killable workers."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from mathsynth.verifiers.answers import AnswerChecker, Verdict, fast_verdict
from mathsynth.verifiers.answers.exact import read_number
from mathsynth.verifiers.answers.normalize import answer_core, last_boxed


@pytest.fixture(scope="module")
def checker() -> Iterator[AnswerChecker]:
    with AnswerChecker(timeout_s=2.0, workers=2) as c:
        yield c


# --- fast path -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gold", "pred", "verdict"),
    [
        ("3/4", "0.75", "correct"),
        ("0.75", "\\frac{3}{4}", "correct"),
        ("\\frac34", "\\dfrac{3}{4}", "correct"),
        ("1234.5", "$1,234.50", "correct"),
        ("1234.5", "\\$1{,}234.50", "correct"),
        ("-5", "-\\$5", "correct"),
        ("1234", "1,234", "correct"),
        ("12", "12 apples", "correct"),
        ("12", "12 \\text{ apples}", "correct"),
        ("30", "30^\\circ", "correct"),
        ("13", "\\text{13}", "correct"),
        ("7", "\\boxed{7}", "correct"),
        ("7", "$7$", "correct"),
        ("7", "8", "incorrect"),
        ("7", "7.0001", "incorrect"),
        ("1/3", "0.333", "incorrect"),  # a rounded decimal is not the fraction
        ("1/3", "0.333333", "incorrect"),
        # percent: x% equals x or x/100 on the other side, two percents compare as numbers
        ("25%", "25", "correct"),
        ("25%", "0.25", "correct"),
        ("0.25", "25\\%", "correct"),
        ("25%", "25 percent", "correct"),
        ("25%", "2.5%", "incorrect"),
        ("25%", "0.3", "incorrect"),
    ],
)
def test_fast_path_decides_plain_numbers(gold: str, pred: str, verdict: str) -> None:
    v = fast_verdict(gold, pred)
    assert v is not None and v.verdict == verdict, v


@pytest.mark.parametrize(
    ("gold", "pred"),
    [
        ("5 million", "5000000"),  # multiplier words change the value
        ("2\\pi", "2 pi"),
        ("1,5", "1.5"),  # decimal comma or a list: not certain
        ("1, 2", "1,2"),
        ("x^2", "x*x"),
        ("\\sqrt{2}", "1.414"),
        ("1e3", "1000"),
    ],
)
def test_fast_path_defers_what_it_cannot_decide(gold: str, pred: str) -> None:
    assert fast_verdict(gold, pred) is None


def test_empty_answers() -> None:
    assert fast_verdict("", "3") == Verdict("error", "gold answer is empty")
    assert fast_verdict("3", "  ").verdict == "incorrect"  # type: ignore[union-attr]
    assert fast_verdict("3", "\\boxed{}").verdict == "incorrect"  # type: ignore[union-attr]


def test_normalisation_helpers() -> None:
    assert last_boxed("so \\boxed{1} then \\boxed{\\frac{a}{b}}.") == "\\frac{a}{b}"
    assert last_boxed("cut off \\boxed{\\frac{1}{2}") is None
    assert answer_core("The answer is $\\boxed{4\\sqrt(2)}$") == "4\\sqrt{2}"
    assert read_number("12 cm^2") is None
    n = read_number("-\\frac{3}{4}")
    assert n is not None and n.value == -0.75


# --- math-verify regressions (our intended verdict for each known bug) --------------------------


@pytest.mark.parametrize(
    ("gold", "pred", "verdict"),
    [
        # Math-Verify #14: tiny values rounded to 0 compared equal; ours: exact rationals.
        ("\\frac{1}{2004!}", "\\frac{1}{2006!}", "incorrect"),
        ("\\frac{1}{2^{99}}", "\\frac{1}{2^{98}}", "incorrect"),
        ("\\frac{1}{2^{99}}", "2^{-99}", "correct"),
        # Non-rational tiny values must agree to 1e-6 relative, not 6 absolute decimals.
        ("e^{-100}", "e^{-101}", "incorrect"),
        # #14: `\mathrm{e}` truncated the expression to `1`.
        ("1 - \\frac{1}{\\mathrm{e}}", "1 + \\frac{1}{\\mathrm{e}}", "incorrect"),
        ("1 - \\frac{1}{\\mathrm{e}}", "1 - e^{-1}", "correct"),
        # #60: bare equations collapsed to their right side `0`; ours parses them as equations.
        ("3x-y+13=0", "3x+4y+14=0", "incorrect"),
        ("3x-y+13=0", "6x-2y+26=0", "correct"),
        # #41: `4\sqrt(2)` read as 4; ours rewrites `\sqrt(2)` to `\sqrt{2}`.
        ("4", "4\\sqrt(2)", "incorrect"),
        ("4\\sqrt{2}", "4\\sqrt(2)", "correct"),
        # #37: `\text{13}` was not parsed as 13.
        ("13", "\\text{13}", "correct"),
        ("13", "$\\text{13}$", "correct"),
        # #2: a truncated decimal is not the fraction (math-verify rounds to 6 places).
        ("\\frac{1}{3}", "0.333", "incorrect"),
        ("\\frac{1}{12}", "0.0833333333333333", "incorrect"),
        ("33.3", "\\frac{100}{3}", "incorrect"),
        ("\\frac{1}{3}", "\\frac{2}{6}", "correct"),
    ],
)
def test_math_verify_regressions(
    checker: AnswerChecker, gold: str, pred: str, verdict: str
) -> None:
    v = checker.check(gold, pred)
    assert v.verdict == verdict, v


@pytest.mark.parametrize(
    ("gold", "pred", "verdict"),
    [
        ("x^2+2x+1", "(x+1)^2", "correct"),
        ("\\frac{\\sqrt{2}}{2}", "\\frac{1}{\\sqrt{2}}", "correct"),
        ("\\sqrt{2}", "1.414214", "correct"),
        ("\\sqrt{2}", "1.41", "incorrect"),
        ("(1,2)", "The final answer is $(1,2)$.", "correct"),
        ("\\frac{3}{4}", "so we get \\boxed{\\frac34}", "correct"),
        ("y=2x+1", "2x-y+1=0", "correct"),
        ("\\{1,2\\}", "\\{2,1\\}", "correct"),
        ("\\pi", "3", "incorrect"),
    ],
)
def test_symbolic_answers(checker: AnswerChecker, gold: str, pred: str, verdict: str) -> None:
    assert checker.check(gold, pred).verdict == verdict


def test_gold_is_reference_side(checker: AnswerChecker) -> None:
    # verify(gold, pred) is asymmetric: an assignment as gold accepts the bare value.
    assert checker.check("x=2", "2").verdict == "correct"


def test_unparseable_gold_is_error_not_incorrect(checker: AnswerChecker) -> None:
    v = checker.check("\\\\", "3")  # a lone LaTeX line break: nothing to parse
    assert v == Verdict("error", "gold answer could not be parsed")


def test_check_many_keeps_order(checker: AnswerChecker) -> None:
    pairs = [(str(i), str(i if i % 3 else i + 1)) for i in range(20)]
    pairs += [("x^2", "x*x"), ("\\pi", "3")]
    got = [v.verdict for v in checker.check_many(pairs)]
    want = ["incorrect" if i % 3 == 0 else "correct" for i in range(20)] + ["correct", "incorrect"]
    assert got == want


# --- hard timeouts, kills, thread safety --------------------------------------------------------


def test_pathological_inputs_end_within_timeout() -> None:
    # Without a working timeout the tower never finishes and pytest-timeout fails the test;
    # no wall-clock bound here, which would depend on the machine's speed.
    with AnswerChecker(timeout_s=0.5, workers=1) as c:
        verdicts = c.check_many(
            [
                ("2^{2^{2^{2^{2^{2}}}}}", "3"),  # exponent tower: C-level bigint work
                ("x+1", "x+1+0"),
                ("(10^{8})!", "1"),  # huge factorial
                ("2", "1+1"),
            ]
        )
        assert [v.verdict for v in verdicts] == ["error", "correct", "error", "correct"]
        assert "timed out" in verdicts[0].detail
        assert c.restarts == 2  # killed and respawned after each hang


def test_memory_cap_gives_error() -> None:
    with AnswerChecker(timeout_s=10.0, workers=1, memory_mb=400) as c:
        v = c.check("10^{10^{9}}", "1")  # needs ~400 MB for the integer alone
        assert v.verdict == "error"
        assert c.check("x^2", "x*x").verdict == "correct"  # the worker was replaced


def test_thread_safe(checker: AnswerChecker) -> None:
    out: dict[int, list[str]] = {}

    def work(k: int) -> None:
        pairs = [("x^2+" + str(k), f"{k}+x*x"), ("x^2+" + str(k), "x^2")]
        out[k] = [v.verdict for v in checker.check_many(pairs)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(out[k] == ["correct", "incorrect"] for k in range(1, 5))
