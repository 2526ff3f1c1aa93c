"""Formalize: Lean 4 statements that state the problem, derived from its verified program.

For every exec-verified Problem the program is traced symbolically (`generators.formalize.trace`:
parsed, never run) into one arithmetic term over its arguments. The statement takes the
problem's given quantities (the arguments the term uses) as variables, binds each to the
record's value with a hypothesis, and states the answer as the goal; the informal problem is
its docstring:

    /-- A coat costs 80 dollars and is 25% off. How much does it cost now? -/
    theorem ms_<id> (price pct : ℕ) (h₀ : price = 80) (h₁ : pct = 25) :
        price - price * pct / 100 = 60 := by

Each variable is declared in the type its value belongs to (ℕ for a count, ℤ below zero, ℚ
otherwise) and the term is stated in the smallest of ℕ ⊂ ℤ ⊂ ℚ where it means what Python
computed (`term.choose_domain`): ℕ only when every subtraction and division in it is exact for
these values (which the hypotheses fix), else ℤ or ℚ with the variables cast, `(price : ℚ)`.

`formal_statement` is the docstring and signature up to `:= by` (what a prover completes).
`proof` is attached only where the tactic script is certain to close the goal: after `subst`
of the hypotheses the goal is closed numeral arithmetic (+ - * / % ^ and casts), which
`norm_num` decides. Terms with `min` / `max` / `abs` get no proof; their candidate script
(`provenance.candidate_proof`, with the unfolding lemmas) is what a Lean backend tries. With a
backend, statement + proof (or candidate) is checked in batches; when it fails the bare
statement is checked again with `sorry`, so a well-formed statement whose proof was not found
is told apart from one Lean rejects. Without a backend every row is `unchecked`, never
`compiled` or `proved`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction
from typing import Any

from mathsynth.generators.formalize.term import (
    Call,
    Domain,
    Expr,
    UntraceableProgramError,
    Var,
    bare_number,
    choose_domain,
    fixes_type,
    lean_name,
    lean_number,
    render,
    value_domain,
    variables,
    walk,
)
from mathsynth.generators.formalize.trace import trace_program
from mathsynth.numbers import parse_number_or_none
from mathsynth.records import FormalStatement, Problem, Record, Rejection
from mathsynth.stage import RecordStage
from mathsynth.verifiers.lean.backend import HEADER, LeanBackend, LeanItem, LeanResult

_DECIDE = "norm_num"
# min/max/abs need their definitions unfolded before norm_num can evaluate them; that this
# closes every such goal is not certain, so it is only a candidate.
_CANDIDATE_WITH_LEMMAS = (
    "first | norm_num [min_def, max_def, abs_of_nonneg, abs_of_nonpos] | decide | rfl"
    " | simp [min_def, max_def]"
)
_SUBSCRIPTS = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")
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
        if problem.provenance.get("answer_type") == "exact":
            # MATH-style programs compute with sympy (radicals, pi, polynomials), which the
            # tracer does not follow; the LLM formalizer states these from the text.
            return self.reject(problem, "exact_answer", f"a LaTeX answer {problem.answer!r}")
        answer = parse_number_or_none(problem.answer)
        if answer is None:
            return self.reject(problem, "unparseable_answer", f"answer {problem.answer!r}")
        try:
            traced = trace_program(problem.program, problem.variables)
            term = traced.term
            if term.value != answer:
                return self.reject(
                    problem,
                    "answer_mismatch",
                    f"the program computes exactly {term.value}, the answer is "
                    f"{problem.answer!r} (rounded or float-inexact)",
                )
            domain = choose_domain(term)
            goal = _goal(term, domain, answer, problem.answer.strip())
        except UntraceableProgramError as exc:
            return self.reject(problem, "untraceable_program", str(exc))
        given = _ordered(variables(term), list(traced.parameters))
        hypotheses = [f"h{str(i).translate(_SUBSCRIPTS)}" for i in range(len(given))]
        signature = _wrap(
            [
                f"theorem ms_{problem.id}",
                *_binders(given),
                *(
                    f"({h} : {lean_name(v.name)} = {bare_number(v.value, v.text)})"
                    for h, v in zip(hypotheses, given, strict=True)
                ),
            ]
        )
        substitute = f"subst {' '.join(hypotheses)}\n  " if hypotheses else ""
        certain = not _has_calls(term)
        candidate = substitute + (_DECIDE if certain else _CANDIDATE_WITH_LEMMAS)
        provenance: dict[str, Any] = {
            key: problem.provenance[key] for key in _CARRIED_PROVENANCE if key in problem.provenance
        }
        provenance.update(
            generator=self.name,
            method="program",
            domain=domain,
            variables={lean_name(v.name): value_domain(v.value) for v in given},
            hypotheses=len(given),
            candidate_proof=candidate,
            lean_backend=self.backend.name if self.backend is not None else None,
            seed=self.seed,
        )
        return FormalStatement(
            source_id=problem.id,
            informal=f"{problem.question}\nAnswer: {problem.answer}",
            header=HEADER,
            formal_statement=f"{docstring(problem.question)}\n{signature} :\n    {goal} := by",
            proof=candidate if certain else None,
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
        [LeanItem(s.id, f"{s.formal_statement}\n  {_attempt(s)}") for s in statements]
    )
    retry: list[tuple[FormalStatement, LeanResult]] = []
    for statement, result in zip(statements, proofs, strict=True):
        statement.lean_messages = list(result.messages)
        statement.lean_status = result.status
        if result.status == "failed":
            retry.append((statement, result))
        elif result.status == "compiled":
            statement.proof = None
        elif result.status == "proved":
            # A candidate Lean closed the goal with is a proof now.
            statement.proof = _attempt(statement)
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


def _attempt(statement: FormalStatement) -> str:
    """The script to check: the attached proof, else the candidate."""
    return statement.proof or str(statement.provenance.get("candidate_proof") or "sorry")


def _goal(term: Expr, domain: Domain, answer: Fraction, text: str) -> str:
    """`lhs = answer`; the answer needs no ascription when a variable fixes the type."""
    lhs = render(term, domain)
    if fixes_type(term) and answer >= 0:
        return f"{lhs} = {bare_number(answer, text)}"
    return f"{lhs} = {lean_number(answer, domain, text)}"


def _ordered(found: list[Var], names: list[str]) -> list[Var]:
    """The term's variables in the order of the program's arguments."""
    rank = {name: i for i, name in enumerate(names)}
    return sorted(found, key=lambda v: rank.get(v.name, len(rank)))


def _binders(given: list[Var]) -> list[str]:
    """`(price pct : ℕ) (rate : ℚ)`: consecutive variables of one type share a binder."""
    groups: list[tuple[str, list[str]]] = []
    for var in given:
        kind = value_domain(var.value)
        if groups and groups[-1][0] == kind:
            groups[-1][1].append(lean_name(var.name))
        else:
            groups.append((kind, [lean_name(var.name)]))
    return [f"({' '.join(names)} : {kind})" for kind, names in groups]


def _wrap(parts: list[str], width: int = 100) -> str:
    """Parts joined by spaces, continued on lines indented by 4 past `width` (Mathlib style)."""
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 1 + len(part) + 2 > width:
            lines.append(f"    {part}")
        else:
            lines[-1] += f" {part}"
    return "\n".join(lines)


def docstring(text: str) -> str:
    """The informal problem as a Lean doc comment; comment delimiters inside it are broken
    up so the comment cannot end early or nest."""
    body = " ".join(text.split()).replace("-/", "- /").replace("/-", "/ -")
    return f"/-- {body} -/"
