"""Formalize: Lean 4 statements derived from verified programs, faithful by construction.

For every exec-verified Problem the program is traced symbolically (`generators.formalize.trace`:
parsed, never run) with the record's variable values into one arithmetic term, and the
statement says that term equals the record's answer:

    theorem ms_<id> : (80 : ℕ) - (80 : ℕ) * (25 : ℕ) / (100 : ℕ) = (60 : ℕ) := by
      first | norm_num | decide | rfl | simp

`formal_statement` is the signature up to `:= by` (what a prover completes) and `proof` the
tactic block. With a Lean backend, statement + candidate proof is checked in batches; when the
proof fails the bare statement is checked again with `sorry`, so a well-formed statement whose
proof was not found is told apart from one Lean rejects. Without a backend every row is
`unchecked`, never `compiled` or `proved`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from mathsynth.generators.formalize.term import (
    Call,
    Expr,
    UntraceableProgramError,
    choose_domain,
    lean_number,
    render,
    walk,
)
from mathsynth.generators.formalize.trace import trace_solution
from mathsynth.numbers import parse_number_or_none
from mathsynth.records import FormalStatement, Problem, Record, Rejection
from mathsynth.stage import RecordStage
from mathsynth.verifiers.lean.backend import HEADER, LeanBackend, LeanItem, LeanResult

_TACTICS = "first | norm_num | decide | rfl | simp"
# min/max/abs need their definitions unfolded before norm_num can evaluate them.
_TACTICS_WITH_LEMMAS = (
    "first | norm_num [min_def, max_def, abs_of_nonneg, abs_of_nonpos] | decide | rfl"
    " | simp [min_def, max_def]"
)
_NO_BACKEND = "unchecked: no Lean backend configured (--lean-repl / --lean-server)"
_CARRIED_PROVENANCE = ("config_hash", "pipeline_version")


class Formalize(RecordStage):
    """Derived stage: passes every record through and adds a FormalStatement (or a Rejection)
    for each verified Problem that has a program."""

    name = "formalize"

    def __init__(
        self, *, lean: LeanBackend | None = None, seed: int = 0, batch_size: int = 256
    ) -> None:
        super().__init__()
        self.backend = lean
        self.seed = seed
        self.batch_size = batch_size

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        pending: list[FormalStatement] = []
        for record in records:
            yield record
            if not _eligible(record):
                continue
            assert isinstance(record, Problem)
            made = self.statement_for(record)
            if isinstance(made, Rejection):
                yield made
                continue
            pending.append(made)
            if len(pending) >= self.batch_size:
                yield from self._checked(pending)
                pending = []
        if pending:
            yield from self._checked(pending)

    def statement_for(self, problem: Problem) -> FormalStatement | Rejection:
        """The unchecked statement for one verified problem, or why there is none."""
        assert problem.program is not None
        answer = parse_number_or_none(problem.answer)
        if answer is None:
            return self.reject(problem, "unparseable_answer", f"answer {problem.answer!r}")
        try:
            term = trace_solution(problem.program, problem.variables)
            if term.value != answer:
                return self.reject(
                    problem,
                    "answer_mismatch",
                    f"the program computes exactly {term.value}, the answer is "
                    f"{problem.answer!r} (rounded or float-inexact)",
                )
            domain = choose_domain(term)
            lhs = render(term, domain)
            rhs = lean_number(answer, domain, problem.answer.strip())
        except UntraceableProgramError as exc:
            return self.reject(problem, "untraceable_program", str(exc))
        proof = _TACTICS_WITH_LEMMAS if _has_calls(term) else _TACTICS
        provenance: dict[str, Any] = {
            key: problem.provenance[key] for key in _CARRIED_PROVENANCE if key in problem.provenance
        }
        provenance.update(
            generator=self.name,
            method="program",
            domain=domain,
            candidate_proof=proof,
            lean_backend=self.backend.name if self.backend is not None else None,
            seed=self.seed,
        )
        return FormalStatement(
            source_id=problem.id,
            informal=f"{problem.question}\nAnswer: {problem.answer}",
            header=HEADER,
            formal_statement=f"theorem ms_{problem.id} : {lhs} = {rhs} := by",
            proof=proof,
            lean_status="unchecked",
            lean_messages=[_NO_BACKEND],
            provenance=provenance,
        )

    def _checked(self, statements: list[FormalStatement]) -> Iterator[FormalStatement]:
        if self.backend is not None:
            _check(self.backend, statements)
        for statement in statements:
            self.stat_update("statements")
            self.stat_update(f"lean.{statement.lean_status}")
            yield statement


def _check(backend: LeanBackend, statements: list[FormalStatement]) -> None:
    """Set lean_status / lean_messages / proof on each statement from the backend's verdicts."""
    proofs = backend.check(
        [LeanItem(s.id, f"{s.formal_statement}\n  {s.proof}") for s in statements]
    )
    retry: list[tuple[FormalStatement, LeanResult]] = []
    for statement, result in zip(statements, proofs, strict=True):
        statement.lean_messages = list(result.messages)
        statement.lean_status = result.status
        if result.status == "failed":
            retry.append((statement, result))
        elif result.status == "compiled":
            statement.proof = None
    if not retry:
        return
    bare = backend.check([LeanItem(s.id, f"{s.formal_statement}\n  sorry") for s, _ in retry])
    for (statement, proof_result), result in zip(retry, bare, strict=True):
        statement.proof = None
        statement.lean_messages = [
            *(f"proof: {m}" for m in proof_result.messages),
            *(f"statement: {m}" for m in result.messages),
        ]
        # Only a statement Lean accepted with `sorry` is "compiled"; an unchecked re-check
        # leaves the failed proof attempt as the verdict.
        statement.lean_status = "compiled" if result.status == "compiled" else "failed"


def _eligible(record: Record) -> bool:
    return (
        isinstance(record, Problem)
        and record.verification.status == "verified"
        and bool(record.program)
    )


def _has_calls(term: Expr) -> bool:
    return any(isinstance(node, Call) for node in walk(term))
