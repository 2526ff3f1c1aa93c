"""The `exec` checker: re-run `solution(**variables)` in the sandbox and compare with `answer`.

This is the check every program-carrying Problem passes before it counts as verified. It is
independent of how the record was made: the program runs again, in a fresh namespace of a
sandbox worker, from the stored `program` and `variables` columns alone — exactly what a
user re-running the row would do.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from fractions import Fraction
from typing import Any, Protocol

from mathsynth.records import Problem, Record, Verification
from mathsynth.stage import RecordStage
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob, SandboxResult

# Relative tolerance for float programs: answers are rendered with at most 6 decimals.
_REL_TOL = 1e-9


def parse_exact(text: str) -> Fraction | None:
    """ "42", "-3.5", "3/4" → Fraction; anything else (units, LaTeX, words) → None."""
    try:
        return Fraction(text.strip().replace(",", ""))
    except (ValueError, ZeroDivisionError):
        return None


def answers_agree(result: Any, answer: str) -> bool | None:
    """True/False when both sides are plain numbers; None when it cannot tell."""
    expected = parse_exact(answer)
    if expected is None or isinstance(result, bool):
        return None
    if isinstance(result, (int, Fraction)):
        return Fraction(result) == expected
    if isinstance(result, float):
        scale = max(1.0, abs(float(expected)))
        return abs(result - float(expected)) <= _REL_TOL * scale
    if isinstance(result, str):
        parsed = parse_exact(result)
        return None if parsed is None else parsed == expected
    return None


# The second run of an exact-answer program: its value written independently of LaTeX (a/b for
# a rational, 30 significant digits for another number, the expanded expression otherwise),
# for the answer checker to compare with the stored LaTeX `answer`.
_CHECK_FORM = """
import sympy as _mathsynth_sympy
_mathsynth_solution = solution


def solution(**kwargs):
    value = _mathsynth_sympy.sympify(_mathsynth_solution(**kwargs))
    if value.is_Rational:
        return str(value)
    if value.is_number:
        return str(_mathsynth_sympy.N(value, 30))
    return _mathsynth_sympy.latex(_mathsynth_sympy.expand(value))
"""


class Checker(Protocol):
    def check_many(self, pairs: list[tuple[str, str]]) -> list[Any]: ...


def is_exact_answer(answer: str) -> bool:
    """Whether `answer` is an `exact` (LaTeX) answer rather than a plain number."""
    return parse_exact(answer) is None


def _needs_exec(problem: Problem) -> bool:
    v = problem.verification
    return v.status == "unchecked" or (v.status == "verified" and v.checker == "agreement")


class ExecVerifier(RecordStage):
    """Re-execute the program of every Problem that carries one; pass the rest through.

    Applies to unchecked Problems and to Problems an LLM generator kept by self-agreement
    (no gold answer exists there, so re-execution is a second, independent check).
    Outcomes: match → Verification("verified", "exec") (checker "agreement+exec" for the
    latter); mismatch, error, timeout → Rejection with reason exec_mismatch / exec_<status>.

    Exact (LaTeX) answers are checked twice: the program re-runs with its value rendered by
    `sympy.latex` in the sandbox, which must equal `answer` character for character (one
    format everywhere), and the answer checker (math-verify) must find `answer` equivalent to
    the value written independently (a/b, 30 significant digits, or the expanded expression):
    checker "exec+answer_check". Without a checker such a record is rejected
    "exec_uncomparable", never called verified on a guess. `checker` is a factory so the
    checker's workers start only when a batch has an exact answer.
    """

    name = "exec_verify"

    def __init__(
        self, *, sandbox: Sandbox, checker: Callable[[], Checker | None] | None = None
    ) -> None:
        super().__init__()
        self.sandbox = sandbox
        self._checker_factory = checker

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        pending: list[Problem] = []
        passthrough: list[Record] = []
        for record in records:
            if isinstance(record, Problem) and record.program and _needs_exec(record):
                pending.append(record)
            else:
                passthrough.append(record)
        yield from passthrough
        if not pending:
            return
        # The stored variables exactly as a user reads them back from JSON (a fraction is
        # "n/d"): the check is the row's own contract, not a friendlier in-process call.
        exact = [is_exact_answer(p.answer) for p in pending]
        jobs = [
            SandboxJob(id=p.id, code=p.program or "", kwargs=dict(p.variables), latex=e)
            for p, e in zip(pending, exact, strict=True)
        ]
        checks = [
            SandboxJob(
                id=p.id, code=p.program or "", epilogue=_CHECK_FORM, kwargs=dict(p.variables)
            )
            for p, e in zip(pending, exact, strict=True)
            if e
        ]
        ran = self.sandbox.run(jobs + checks)
        results, check_results = ran[: len(jobs)], iter(ran[len(jobs) :])
        verdicts = iter(self._exact_verdicts(pending, exact, check_results))
        for problem, result, e in zip(pending, results, exact, strict=True):
            yield (
                self._judge_exact(problem, result, next(verdicts))
                if e
                else self._judge(problem, result)
            )

    def _exact_verdicts(
        self,
        pending: list[Problem],
        exact: list[bool],
        check_results: Iterator[SandboxResult],
    ) -> list[Any]:
        """One answer-checker verdict (or a reason string) per exact-answer problem."""
        out: list[Any] = []
        pairs: list[tuple[str, str]] = []
        slots: list[int] = []
        for problem, e in zip(pending, exact, strict=True):
            if not e:
                continue
            check = next(check_results)
            if check.status != "ok" or not isinstance(check.result, str):
                out.append(f"the value could not be written out: {check.error}")
                continue
            slots.append(len(out))
            out.append(None)
            pairs.append((problem.answer, check.result))
        if pairs:
            checker = self._checker_factory() if self._checker_factory else None
            if checker is None:
                for i in slots:
                    out[i] = "no answer checker to compare exact answers"
            else:
                for i, verdict in zip(slots, checker.check_many(pairs), strict=True):
                    out[i] = verdict
        return out

    def _judge_exact(self, problem: Problem, result: SandboxResult, verdict: Any) -> Record:
        if result.status != "ok":
            return self.reject(
                problem.to_row(), f"exec_{result.status}", result.error or result.status
            )
        if result.result != problem.answer:
            return self.reject(
                problem.to_row(),
                "exec_mismatch",
                f"program gave {result.result!r} in LaTeX, answer {problem.answer!r}",
            )
        if isinstance(verdict, str):
            return self.reject(problem.to_row(), "exec_uncomparable", verdict)
        if not verdict.correct:
            return self.reject(
                problem.to_row(),
                "answer_check_failed",
                f"answer checker: {verdict.verdict} ({verdict.detail})",
            )
        self.stat_update("verified")
        detail = (
            "sympy.latex(solution(**variables)) re-executed in sandbox equals answer; "
            f"answer checker: {verdict.detail}"
        )
        problem.verification = Verification("verified", "exec+answer_check", detail)
        return problem

    def _judge(self, problem: Problem, result: SandboxResult) -> Record:
        if result.status != "ok":
            return self.reject(
                problem.to_row(), f"exec_{result.status}", result.error or result.status
            )
        agree = answers_agree(result.result, problem.answer)
        if agree is None:
            return self.reject(
                problem.to_row(),
                "exec_uncomparable",
                f"cannot compare {result.result!r} with answer",
            )
        if not agree:
            return self.reject(
                problem.to_row(),
                "exec_mismatch",
                f"program gave {result.result!r}, answer {problem.answer}",
            )
        self.stat_update("verified")
        detail = "solution(**variables) re-executed in sandbox equals answer"
        if problem.verification.checker == "agreement":
            problem.verification = Verification(
                "verified", "agreement+exec", f"{problem.verification.detail}; {detail}"
            )
        else:
            problem.verification = Verification("verified", "exec", detail)
        return problem
