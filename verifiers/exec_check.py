"""The `exec` checker: re-run `solution(**variables)` in the sandbox and compare with `answer`.

This is the check every program-carrying Problem passes before it counts as verified. It is
independent of how the record was made: the program runs again, in a fresh namespace of a
sandbox worker, from the stored `program` and `variables` columns alone — exactly what a
user re-running the row would do.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

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


def _needs_exec(problem: Problem) -> bool:
    v = problem.verification
    return v.status == "unchecked" or (v.status == "verified" and v.checker == "agreement")


class ExecVerifier(RecordStage):
    """Re-execute the program of every Problem that carries one; pass the rest through.

    Applies to unchecked Problems and to Problems an LLM generator kept by self-agreement
    (no gold answer exists there, so re-execution is a second, independent check).
    Outcomes: match → Verification("verified", "exec") (checker "agreement+exec" for the
    latter); mismatch, error, timeout → Rejection with reason exec_mismatch / exec_<status>;
    an answer that is not a plain number → Rejection "exec_uncomparable" (the record is
    never called verified on a guess).
    """

    name = "exec_verify"

    def __init__(self, *, sandbox: Sandbox) -> None:
        super().__init__()
        self.sandbox = sandbox

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
        jobs = [
            SandboxJob(id=p.id, code=p.program or "", kwargs=dict(p.variables)) for p in pending
        ]
        for problem, result in zip(pending, self.sandbox.run(jobs), strict=True):
            yield self._judge(problem, result)

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
