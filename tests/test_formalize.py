"""The Formalize stage: statements from verified programs, checked through a Lean backend
(the stand-in REPL process) or left unchecked without one."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import pytest
from dataset_checks import read_table

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
        question=f"An item priced {variables} is discounted. What is the price?",
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
        f"/-- {problem.question} -/\n"
        f"theorem ms_{problem.id} (price pct : ℕ) (h₀ : price = 80) (h₁ : pct = 25) :\n"
        "    price - price * pct / 100 = 60 := by"
    )
    # After `subst` the goal is closed ℕ arithmetic: norm_num is certain to close it.
    assert formal.proof == "subst h₀ h₁\n  norm_num"
    assert formal.lean_status == "unchecked"
    assert "no Lean backend" in formal.lean_messages[0]
    assert formal.informal.endswith("Answer: 60")
    assert formal.provenance["domain"] == "ℕ"
    assert formal.provenance["variables"] == {"price": "ℕ", "pct": "ℕ"}
    assert formal.provenance["hypotheses"] == 2
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
    # Whole givens stay ℕ and are cast where the division needs ℚ.
    assert first.formal_statement.endswith(
        "(a b : ℕ) (h₀ : a = 1) (h₁ : b = 3) :\n    (a : ℚ) / (b : ℚ) = 1 / 3 := by"
    )
    assert second.formal_statement.endswith(
        "(a b : ℚ) (h₀ : a = 1.5) (h₁ : b = 0.5) :\n    a * b = 0.75 := by"
    )


def test_subtraction_that_would_truncate_in_nat_is_stated_in_int() -> None:
    problem = _problem("def solution(a, b):\n    return a - b * 2", "-7", a=3, b=5)
    (formal,) = _formal(list(Formalize().run([problem])))
    assert formal.formal_statement.endswith(
        "(a b : ℕ) (h₀ : a = 3) (h₁ : b = 5) :\n    (a : ℤ) - (b : ℤ) * 2 = (-7 : ℤ) := by"
    )


def test_min_max_abs_get_a_candidate_with_unfolding_lemmas_but_no_proof() -> None:
    problem = _problem("def solution(a, b):\n    return max(a, b) - abs(a - b)", "3", a=3, b=4)
    (formal,) = _formal(list(Formalize().run([problem])))
    assert "(max (a : ℤ) (b : ℤ)) - |(a : ℤ) - (b : ℤ)| = (3 : ℤ)" in formal.formal_statement
    # norm_num is not certain to close min/max/abs goals: no proof, only a candidate.
    assert formal.proof is None
    assert "min_def, max_def" in formal.provenance["candidate_proof"]
    with _fake() as backend:
        (checked,) = _formal(list(Formalize(lean=backend).run([problem])))
    assert checked.lean_status == "proved"
    assert checked.proof == formal.provenance["candidate_proof"]


def test_docstring_cannot_close_early_and_keywords_are_quoted() -> None:
    problem = Problem(
        "infinitymath",
        "instantiate",
        "s",
        "Odd text -/ with /- comment marks: what is 2 + 3?",
        "...",
        "5",
        "def solution(fun, min):\n    return fun + min",
        {"fun": 2, "min": 3},
        verification=VERIFIED,
    )
    (formal,) = _formal(list(Formalize().run([problem])))
    doc, signature, goal = formal.formal_statement.split("\n")
    assert doc.startswith("/-- ") and doc.endswith(" -/") and "-/" not in doc[4:-3]
    assert "/-" not in doc[3:]
    assert signature.endswith("(«fun» min' : ℕ) (h₀ : «fun» = 2) (h₁ : min' = 3) :")
    assert goal == "    «fun» + min' = 5 := by"


def test_long_signatures_wrap_and_every_given_gets_a_hypothesis() -> None:
    names = [f"quantity_{i}" for i in range(8)]
    program = f"def solution({', '.join(names)}):\n    return {' + '.join(names)}\n"
    problem = _problem(program, "36", **{n: i + 1 for i, n in enumerate(names)})
    (formal,) = _formal(list(Formalize().run([problem])))
    lines = formal.formal_statement.split("\n")
    assert len(lines) > 3 and all(len(line) <= 100 for line in lines[1:-1])
    assert all(
        f"(h{sub} : quantity_{i} = {i + 1})" in formal.formal_statement
        for i, sub in enumerate("₀₁₂₃₄₅₆₇")
    )
    assert formal.proof == "subst h₀ h₁ h₂ h₃ h₄ h₅ h₆ h₇\n  norm_num"
    with _fake() as backend:
        (checked,) = _formal(list(Formalize(lean=backend).run([problem])))
    assert checked.lean_status == "proved"


def test_checked_statements_are_proved_through_the_repl() -> None:
    problems = [_problem(answer=str(p - p * 25 // 100), price=p, pct=25) for p in (80, 40, 12)]
    with _fake() as backend:
        stage = Formalize(lean=backend)
        formals = _formal(list(stage.run(problems)))
    assert [f.lean_status for f in formals] == ["proved"] * 3
    assert all(f.proof == "subst h₀ h₁\n  norm_num" for f in formals)
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
    assert formal.formal_statement.split("\n")[1:] == [
        f"theorem ms_{problem.id} (red blue green : ℕ) (h₀ : red = 5) (h₁ : blue = 3)"
        " (h₂ : green = 2) :",
        "    (blue : ℚ) / ((red : ℚ) + (blue : ℚ) + (green : ℚ)) = 3 / 10 := by",
    ]
    with _fake() as backend:
        (checked,) = _formal(list(Formalize(lean=backend).run([problem])))
    assert checked.lean_status == "proved"


# -- the whole default build ---------------------------------------------------------------

_HYPOTHESIS = re.compile(r"\(h\S* : (\S+) = [^()]+\)")


@pytest.mark.slow
def test_default_build_statements_state_the_problem(default_build: Path) -> None:
    rows = read_table(default_build, "formal")
    sft = {r["id"]: r for r in read_table(default_build, "sft")}
    assert rows
    bound = [r for r in rows if _HYPOTHESIS.search(r["formal_statement"])]
    assert len(bound) >= 0.95 * len(rows), f"{len(bound)}/{len(rows)} bind a hypothesis"
    for row in rows:
        doc, _, theorem = row["formal_statement"].partition("\n")
        question = " ".join(sft[row["source_id"]]["question"].split())
        assert doc.startswith("/-- ") and doc.endswith(" -/")
        assert doc[4:-3].replace("- /", "-/").replace("/ -", "/-") == question
        assert theorem.startswith(f"theorem ms_{row['source_id']}")
        assert theorem.endswith(":= by")
        assert row["lean_status"] == "unchecked"
        prov = json.loads(row["provenance"])
        names = set(_HYPOTHESIS.findall(row["formal_statement"]))
        assert names == set(prov["variables"]) and len(names) == prov["hypotheses"]
        # A proof is attached only where norm_num is certain: no min / max / abs.
        calls = re.search(r"\(min |\(max |\|", theorem)
        assert (row["proof"] is None) == bool(calls), row["formal_statement"]
    # Substituting the hypotheses makes each goal true (judged by the stand-in REPL's own
    # evaluator on a sample).
    sample = rows[:: max(1, len(rows) // 400)]
    statements = [
        FormalStatement(
            r["source_id"],
            r["informal"],
            r["header"],
            r["formal_statement"],
            r["proof"],
            provenance=json.loads(r["provenance"]),
        )
        for r in sample
    ]
    with _fake() as backend:
        checked = list(Formalize(lean=backend)._checked(statements))
    assert [s.lean_status for s in checked] == ["proved"] * len(checked)
