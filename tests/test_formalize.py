"""The Formalize stage: statements from verified programs, checked through a Lean backend
(the stand-in REPL process) or left unchecked without one."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from mathsynth.generators.formalize.offline import Formalize
from mathsynth.records import (
    FormalStatement,
    Problem,
    Record,
    Rejection,
    Verification,
)
from mathsynth.verifiers.lean import HEADER, ReplBackend

FAKE = [sys.executable, str(Path(__file__).with_name("fake_lean_repl.py"))]
VERIFIED = Verification("verified", "exec", "solution() returned the answer")

DISCOUNT = (
    "def solution(price, pct):\n    discount = price * pct / 100\n    return price - discount\n"
)


def _problem(
    program: str | None = DISCOUNT,
    answer: str = "60",
    verification: Verification = VERIFIED,
    **variables: Any,
) -> Problem:
    return Problem(
        generator="infinitymath",
        method="instantiate",
        seed_id="discount-1",
        question=f"A {variables} item is discounted. What is the price?",
        solution="...",
        answer=answer,
        program=program,
        variables=variables or {"price": 80, "pct": 25},
        verification=verification,
        provenance={"config_hash": "abc", "pipeline_version": "0.1.0", "model": None},
    )


def _fake(*args: str, **kwargs: Any) -> ReplBackend:
    return ReplBackend([*FAKE, *args], timeout_s=5.0, start_timeout_s=10.0, **kwargs)


def _formal(records: list[Record]) -> list[FormalStatement]:
    return [r for r in records if isinstance(r, FormalStatement)]


def test_statement_without_backend_is_unchecked() -> None:
    problem = _problem()
    stage = Formalize(seed=7)
    out = list(stage.run([problem]))
    assert out[0] is problem
    (formal,) = _formal(out)
    assert formal.source_id == problem.id
    assert formal.header == HEADER
    assert formal.formal_statement == (
        f"theorem ms_{problem.id} : (80 : ℕ) - (80 : ℕ) * (25 : ℕ) / (100 : ℕ) = (60 : ℕ) := by"
    )
    assert formal.proof == "first | norm_num | decide | rfl | simp"
    assert formal.lean_status == "unchecked"
    assert "no Lean backend" in formal.lean_messages[0]
    assert formal.informal.endswith("Answer: 60")
    assert formal.provenance["domain"] == "ℕ"
    assert formal.provenance["config_hash"] == "abc"
    assert formal.provenance["seed"] == 7
    assert stage.stats["lean.unchecked"] == 1


def test_only_verified_problems_with_programs_are_formalized() -> None:
    records: list[Record] = [
        _problem(verification=Verification("failed", "exec", "mismatch")),
        _problem(program=None),
        Rejection(stage="x", reason="y", detail="z", record={}),
    ]
    assert list(Formalize().run(records)) == records


@pytest.mark.parametrize(
    ("problem", "reason", "detail"),
    [
        (
            _problem(
                "def solution(n):\n    for i in range(n):\n        n += 1\n    return n", "4", n=2
            ),
            "untraceable_program",
            "for loop",
        ),
        (
            _problem("def solution(a, b):\n    return a / b", "0.33", a=1, b=3),
            "answer_mismatch",
            "1/3",
        ),
        (_problem(answer="sixty"), "unparseable_answer", "'sixty'"),
    ],
)
def test_rejections(problem: Problem, reason: str, detail: str) -> None:
    stage = Formalize()
    out = list(stage.run([problem]))
    assert out[0] is problem
    (rejection,) = out[1:]
    assert isinstance(rejection, Rejection)
    assert (rejection.stage, rejection.reason) == ("formalize", reason)
    assert detail in rejection.detail
    assert rejection.record["id"] == problem.id
    assert stage.stats[f"rejected:{reason}"] == 1


def test_rational_answers_render_as_fractions_and_decimals() -> None:
    fraction = _problem("def solution(a, b):\n    return a / b", "1/3", a=1, b=3)
    decimal = _problem("def solution(a, b):\n    return a * b", "0.75", a=1.5, b=0.5)
    first, second = _formal(list(Formalize().run([fraction, decimal])))
    assert first.formal_statement.endswith(": (1 : ℚ) / (3 : ℚ) = (1 / 3 : ℚ) := by")
    assert second.formal_statement.endswith(": (1.5 : ℚ) * (0.5 : ℚ) = (0.75 : ℚ) := by")


def test_min_max_abs_get_their_unfolding_lemmas() -> None:
    problem = _problem("def solution(a, b):\n    return max(a, b) - abs(a - b)", "3", a=3, b=4)
    (formal,) = _formal(list(Formalize().run([problem])))
    assert formal.proof is not None and "min_def, max_def" in formal.proof


def test_checked_statements_are_proved_through_the_repl() -> None:
    problems = [_problem(answer=str(p - p * 25 // 100), price=p, pct=25) for p in (80, 40, 12)]
    with _fake() as backend:
        stage = Formalize(lean=backend)
        formals = _formal(list(stage.run(problems)))
    assert [f.lean_status for f in formals] == ["proved"] * 3
    assert all(f.proof == "first | norm_num | decide | rfl | simp" for f in formals)
    assert formals[0].provenance["lean_backend"] == "repl"
    assert stage.stats["lean.proved"] == 3


def test_a_failed_proof_is_rechecked_with_sorry() -> None:
    with _fake("--weak-tactics") as backend:
        (weak,) = _formal(list(Formalize(lean=backend).run([_problem()])))
    assert weak.lean_status == "compiled"
    assert weak.proof is None
    assert weak.lean_messages[0] == "proof: error 1:0: linarith failed"
    assert weak.lean_messages[1].startswith("statement: warning 1:0: declaration uses 'sorry'")
    with _fake("--reject-all") as backend:
        (bad,) = _formal(list(Formalize(lean=backend).run([_problem()])))
    assert bad.lean_status == "failed"
    assert bad.proof is None


def test_a_dead_repl_leaves_rows_unchecked_and_the_build_goes_on() -> None:
    problems = [_problem(), _problem(answer="20", price=80, pct=75)]
    with _fake("--fail-start") as backend:
        out = list(Formalize(lean=backend).run(problems))
    formals = _formal(out)
    assert [f.lean_status for f in formals] == ["unchecked", "unchecked"]
    assert "cannot find the Lean toolchain" in formals[0].lean_messages[0]
    assert [r for r in out if isinstance(r, Problem)] == problems


def test_batches_keep_records_ahead_of_their_statements() -> None:
    problems = [_problem(answer=str(p - p // 4), price=p, pct=25) for p in (4, 8, 12, 16, 20)]
    out = list(Formalize(batch_size=2).run(problems))
    kinds = ["P" if isinstance(r, Problem) else "F" for r in out]
    assert kinds == list("PPFFPPFFPF")


def test_output_is_deterministic() -> None:
    problems = [_problem(), _problem("def solution(a, b):\n    return a / b", "1/3", a=1, b=3)]
    first = [r.to_row() for r in Formalize().run(problems)]
    second = [r.to_row() for r in Formalize().run(problems)]
    assert first == second


def test_bundled_fraction_programs_are_formalized() -> None:
    marbles = (
        "def solution(red, blue, green):\n"
        "    from fractions import Fraction\n"
        "    total = red + blue + green\n"
        "    p = Fraction(blue, total)\n"
        "    return p\n"
    )
    problem = _problem(marbles, "3/10", red=5, blue=3, green=2)
    (formal,) = _formal(list(Formalize().run([problem])))
    assert formal.formal_statement == (
        f"theorem ms_{problem.id} : (3 : ℚ) / ((5 : ℚ) + (3 : ℚ) + (2 : ℚ)) = (3 / 10 : ℚ) := by"
    )
    with _fake() as backend:
        (checked,) = _formal(list(Formalize(lean=backend).run([problem])))
    assert checked.lean_status == "proved"
