"""FormalizeFromLanguage: Lean 4 statements translated from the problem text by an LLM.

DeepSeek-Prover's autoformalization loop, per batch of verified Problems:

1. translate: the model writes `theorem ... := by sorry` stating the problem and its verified
   answer; the reply is parsed tolerantly (fenced or bare, `lemma` or `theorem`, header lines
   dropped) and the theorem renamed `fl_<problem id>`;
2. compile: statement + `sorry` goes through the Lean backend; only `compiled` ones go on;
3. score: the model grades the statement's faithfulness (`SCORE_CRITERIA`, recorded in
   provenance) as excellent / good / above average / fair / poor; fair and poor are dropped;
4. consistency: the goal is replaced by `False` and `CONSISTENCY_TACTICS` tried; if Lean
   closes it the hypotheses contradict each other and the statement is rejected;
5. optionally (`attempt_proofs`), proofs of the statement and of its negation are tried with
   the same automation and both outcomes recorded; a proved negation means the statement is
   false, and since the answer it encodes was verified, that it is unfaithful: rejected.

All LLM requests of a step go through one `complete_many` call and all Lean checks of a step
through one `backend.check` call. Hypotheses written inside the goal (`∀ x, h x → ...`) are
not moved out for the consistency check; only binders before the colon are.

Without a Lean backend (or when the backend could not run, see `verifiers.lean.backend`),
statements cannot be kept "because they compile": they are emitted as `unchecked` candidates
carrying the model's score, never `compiled` or `proved`, and steps 4-5 are skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mathsynth.generators.llm import (
    Completion,
    LLMClient,
    LLMRequestError,
    ReplyParseError,
    usage_provenance,
)
from mathsynth.generators.llm.parsing import check_reply, code_blocks, extract_json_object
from mathsynth.generators.llm.stage_stats import complete_counted
from mathsynth.records import FormalStatement, LeanStatus, Problem, Record, as_dict
from mathsynth.stage import RecordStage
from mathsynth.verifiers.lean.backend import HEADER, LeanBackend, LeanItem, LeanResult

# The prompt templates (generators/formalize/prompts/): translation to Lean and grading (a
# JSON reply, or at least a "Score:" line). The criteria are recorded in provenance, so they
# are passed to the grading template rather than written in it.
TRANSLATE_KIND = "formalize.translate"
SCORE_KIND = "formalize.score"

SCORE_CRITERIA = (
    "faithfulness: every quantity and condition of the problem appears, with the same values",
    "answer: the conclusion states exactly the given answer to what the problem asks",
    "hypotheses: nothing is assumed that the problem does not say",
    "types: number types and operations (division, subtraction) mean what the problem means",
)

SCORES = ("excellent", "good", "above average", "fair", "poor")
DROPPED_SCORES = ("fair", "poor")
# Each is tried alone (`done` makes a tactic that only simplifies count as a failure).
CONSISTENCY_TACTICS = ("simp_all", "linarith", "nlinarith", "norm_num", "omega")
PROOF_TACTICS = ("norm_num", "simp_all", "linarith", "nlinarith", "omega", "decide")

_HEADER_LINE = re.compile(r"^\s*(import|open|set_option)\b[^\n]*$", re.MULTILINE)
_DECLARATION = re.compile(r"^[ \t]*(?:theorem|lemma)\s+([^\s:(\[{⦃]+)", re.MULTILINE)
_SCORE_LINE = re.compile(
    r"^\W*(?:score|grade|rating)\W*[:=-]\s*\W*(excellent|good|above[ _-]average|fair|poor)\b",
    re.IGNORECASE | re.MULTILINE,
)
_CLOSERS = {"(": ")", "[": "]", "{": "}", "⦃": "⦄"}
_LEAN_FENCES = ("lean", "lean4", "")


@dataclass(frozen=True, slots=True)
class Theorem:
    """A parsed theorem: `theorem <name> <binders> : <goal>` (its proof is dropped)."""

    name: str
    binders: str
    goal: str

    def statement(self) -> str:
        """The signature up to `:= by`, the form `formal_statement` stores."""
        return f"theorem {self.name}{_spaced(self.binders)} : {self.goal} := by"

    def variant(self, suffix: str, goal: str, tactics: tuple[str, ...]) -> str:
        """The same binders with another goal, closed by the first tactic that finishes it."""
        signature = f"theorem {self.name}_{suffix}{_spaced(self.binders)} : {goal} := by"
        return f"{signature}\n  {_first_of(tactics)}"


def parse_theorem(reply: str, name: str) -> Theorem:
    """The first theorem in a model reply, renamed `name`.

    Accepts a ```lean / ```lean4 / unlabelled block or bare text, `lemma` for `theorem`, and
    header lines (dropped: the backend owns the header). Whatever follows `:=` is discarded,
    so a model that wrote a proof instead of `sorry` still yields its statement. Raises
    ReplyParseError: "empty" / "refusal", "no_theorem" (no declaration), "incomplete_theorem"
    (no `: goal :=` at bracket depth 0, e.g. cut off).
    """
    text = check_reply(reply)
    blocks = [body for lang, body in code_blocks(text) if lang in _LEAN_FENCES]
    source = next((b for b in blocks if _DECLARATION.search(b)), text)
    source = _HEADER_LINE.sub("", source)
    match = _DECLARATION.search(source)
    if match is None:
        raise ReplyParseError("no_theorem", "no `theorem` or `lemma` in the reply", reply)
    binders, goal = _split_signature(source[match.end() :], reply)
    return Theorem(name=name, binders=binders, goal=goal)


def parse_score(reply: str) -> tuple[str, str, dict[str, Any]]:
    """(score, reason, per-criterion notes) from a grading reply: its JSON object, else a
    "Score: good" line. Raises ReplyParseError ("empty", "refusal", "no_score")."""
    try:
        data = extract_json_object(reply, required=("score",))
    except ReplyParseError as exc:
        if exc.reason in ("empty", "refusal"):
            raise
        line = _SCORE_LINE.search(reply)
        if line is None:
            raise ReplyParseError("no_score", "no score in the grading reply", reply) from None
        return _normal_score(line.group(1)), "", {}
    score = _normal_score(str(data["score"]))
    if score not in SCORES:
        raise ReplyParseError("no_score", f"unknown score {data['score']!r}", reply)
    criteria = data.get("criteria")
    return score, str(data.get("reason", "")), criteria if isinstance(criteria, dict) else {}


class FormalizeFromLanguage(RecordStage):
    """Derived stage: passes every record through and, for each verified Problem, adds a
    FormalStatement translated by the LLM (see module docstring) or a Rejection saying why
    there is none (reasons: `llm_*`, `parse_*`, "does_not_compile", "low_score",
    "inconsistent_hypotheses", "negation_proved")."""

    name = "formalize_llm"
    requires = (("openai", "openai[aiohttp]"),)

    def __init__(
        self,
        *,
        llm: LLMClient,
        lean: LeanBackend | None = None,
        seed: int = 0,
        attempt_proofs: bool = True,
        batch_size: int = 64,
        temperature: float | None = None,
    ) -> None:
        super().__init__()
        self.llm = llm
        self.backend = lean
        self.seed = seed
        self.attempt_proofs = attempt_proofs
        self.batch_size = batch_size
        self.temperature = temperature

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        pending: list[Problem] = []
        for record in records:
            yield record
            if isinstance(record, Problem) and record.verification.status == "verified":
                pending.append(record)
                if len(pending) >= self.batch_size:
                    yield from self._formalize(pending)
                    pending = []
        if pending:
            yield from self._formalize(pending)

    def _formalize(self, problems: list[Problem]) -> Iterator[Record]:
        out: list[Record] = []
        candidates = self._translate(problems, out)
        candidates = self._compile(candidates, out)
        candidates = self._score(candidates, out)
        candidates = self._check_logic(candidates, out)
        for candidate in candidates:
            out.append(self._statement(candidate))
        for record in out:
            if isinstance(record, FormalStatement):
                self.stat_update("statements")
                self.stat_update(f"lean.{record.lean_status}")
        yield from out

    def _translate(self, problems: list[Problem], out: list[Record]) -> list[_Candidate]:
        prompt = self.llm.prompts.get(TRANSLATE_KIND)
        requests = [
            prompt.request(
                {"header": HEADER, "question": p.question, "answer": p.answer},
                temperature=self.temperature,
            )
            for p in problems
        ]
        candidates: list[_Candidate] = []
        for problem, result in zip(
            problems, complete_counted(self.llm, self, requests), strict=True
        ):
            if isinstance(result, LLMRequestError):
                out.append(result.to_rejection(self, as_dict(problem)))
                continue
            completion = result[0]
            try:
                theorem = parse_theorem(completion.text, f"fl_{problem.id}")
            except ReplyParseError as exc:
                out.append(exc.to_rejection(self, as_dict(problem)))
                continue
            candidates.append(_Candidate(problem, theorem, [completion]))
        return candidates

    def _compile(self, candidates: list[_Candidate], out: list[Record]) -> list[_Candidate]:
        if self.backend is None:
            for candidate in candidates:
                candidate.lean_messages = [
                    "unchecked: no Lean backend configured (--lean-repl / --lean-server)"
                ]
            return candidates
        items = [LeanItem(c.problem.id, f"{c.theorem.statement()}\n  sorry") for c in candidates]
        kept: list[_Candidate] = []
        for candidate, result in zip(candidates, _check(self.backend, items), strict=True):
            candidate.lean_messages = list(result.messages)
            if result.status == "failed":
                out.append(
                    self.reject(
                        candidate.rejected_input(), "does_not_compile", "; ".join(result.messages)
                    )
                )
                continue
            # "unchecked" (the backend could not run) stays a candidate, never "compiled".
            candidate.lean_status = "compiled" if result.status != "unchecked" else "unchecked"
            kept.append(candidate)
        return kept

    def _score(self, candidates: list[_Candidate], out: list[Record]) -> list[_Candidate]:
        prompt = self.llm.prompts.get(SCORE_KIND)
        requests = [
            prompt.request(
                {
                    "criteria": list(SCORE_CRITERIA),
                    "question": c.problem.question,
                    "answer": c.problem.answer,
                    "statement": f"{c.theorem.statement()} sorry",
                },
                temperature=0.0,
            )
            for c in candidates
        ]
        results = complete_counted(self.llm, self, requests)
        kept: list[_Candidate] = []
        for candidate, result in zip(candidates, results, strict=True):
            if isinstance(result, LLMRequestError):
                out.append(result.to_rejection(self, candidate.rejected_input()))
                continue
            candidate.completions.append(result[0])
            try:
                score, reason, notes = parse_score(result[0].text)
            except ReplyParseError as exc:
                out.append(exc.to_rejection(self, candidate.rejected_input()))
                continue
            candidate.provenance.update(score=score, score_reason=reason, score_notes=notes)
            if score in DROPPED_SCORES:
                out.append(
                    self.reject(
                        candidate.rejected_input(), "low_score", f"scored {score}: {reason}"
                    )
                )
                continue
            kept.append(candidate)
        return kept

    def _check_logic(self, candidates: list[_Candidate], out: list[Record]) -> list[_Candidate]:
        """Consistency of the hypotheses and, optionally, proofs of the statement and its
        negation, all in one backend call. Only compiled statements are checked."""
        checked = [c for c in candidates if c.lean_status == "compiled"]
        for candidate in candidates:
            if candidate.lean_status != "compiled":
                candidate.provenance["consistency"] = "unchecked"
        if self.backend is None or not checked:
            return candidates
        items: list[LeanItem] = []
        for candidate in checked:
            theorem, key = candidate.theorem, candidate.problem.id
            items.append(LeanItem(key, theorem.variant("false", "False", CONSISTENCY_TACTICS)))
            if self.attempt_proofs:
                items.append(LeanItem(key, theorem.variant("proof", theorem.goal, PROOF_TACTICS)))
                negation = f"¬ ({theorem.goal})"
                items.append(LeanItem(key, theorem.variant("negation", negation, PROOF_TACTICS)))
        results = iter(_check(self.backend, items))
        rejected: set[int] = set()
        for candidate in checked:
            false = next(results)
            candidate.provenance["consistency"] = _outcome(false, "inconsistent", "consistent")
            candidate.provenance["consistency_tactics"] = list(CONSISTENCY_TACTICS)
            if false.status == "proved":
                out.append(
                    self.reject(
                        candidate.rejected_input(),
                        "inconsistent_hypotheses",
                        "False follows from the hypotheses by one of "
                        + ", ".join(CONSISTENCY_TACTICS),
                    )
                )
                rejected.add(id(candidate))
                if self.attempt_proofs:
                    next(results), next(results)
                continue
            if self.attempt_proofs:
                proof, negation = next(results), next(results)
                candidate.provenance["proof_attempt"] = {
                    "tactics": list(PROOF_TACTICS),
                    "statement": _outcome(proof, "proved", "not_proved"),
                    "negation": _outcome(negation, "proved", "not_proved"),
                }
                if negation.status == "proved":
                    out.append(
                        self.reject(
                            candidate.rejected_input(),
                            "negation_proved",
                            "Lean proved the negation: the statement is false",
                        )
                    )
                    rejected.add(id(candidate))
                elif proof.status == "proved":
                    candidate.proof = _first_of(PROOF_TACTICS)
                    candidate.lean_status = "proved"
        return [c for c in candidates if id(c) not in rejected]

    def _statement(self, candidate: _Candidate) -> FormalStatement:
        problem = candidate.problem
        provenance: dict[str, Any] = {
            key: problem.provenance[key]
            for key in ("config_hash", "pipeline_version")
            if key in problem.provenance
        }
        provenance.update(
            generator=self.name,
            method="language",
            score_criteria=list(SCORE_CRITERIA),
            **candidate.provenance,
            lean_backend=self.backend.name if self.backend is not None else None,
            seed=self.seed,
            **usage_provenance(candidate.completions),
        )
        return FormalStatement(
            source_id=problem.id,
            informal=f"{problem.question}\nAnswer: {problem.answer}",
            header=HEADER,
            formal_statement=candidate.theorem.statement(),
            proof=candidate.proof,
            lean_status=candidate.lean_status,
            lean_messages=candidate.lean_messages,
            provenance=provenance,
        )


@dataclass(slots=True)
class _Candidate:
    """A statement on its way through the steps, with what each step found."""

    problem: Problem
    theorem: Theorem
    completions: list[Completion]
    lean_status: LeanStatus = "unchecked"
    lean_messages: list[str] = field(default_factory=list)
    proof: str | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    def rejected_input(self) -> dict[str, Any]:
        """The problem plus what was made of it, for a Rejection's `record`."""
        return {
            **as_dict(self.problem),
            "formal_statement": self.theorem.statement(),
            "lean_messages": self.lean_messages,
            "raw_reply": self.completions[0].text,
            **self.provenance,
        }


def _check(backend: LeanBackend, items: list[LeanItem]) -> list[LeanResult]:
    return backend.check(items) if items else []


def _outcome(result: LeanResult, proved: str, not_proved: str) -> str:
    if result.status == "unchecked":
        return "unchecked"
    return proved if result.status == "proved" else not_proved


def _split_signature(rest: str, reply: str) -> tuple[str, str]:
    """(binders, goal) from the text after a theorem's name, split at the first `:` and the
    first `:=` outside brackets."""
    stack: list[str] = []
    colon = None
    for i, ch in enumerate(rest):
        if ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
        elif stack and ch == stack[-1]:
            stack.pop()
        elif not stack and rest.startswith(":=", i):
            if colon is None:
                break
            binders, goal = rest[:colon].strip(), rest[colon + 1 : i].strip()
            if goal:
                return " ".join(binders.split()), goal
            break
        elif not stack and ch == ":" and colon is None:
            colon = i
    raise ReplyParseError(
        "incomplete_theorem", "the theorem has no `: <goal> :=` (cut off or malformed)", reply
    )


def _first_of(tactics: tuple[str, ...]) -> str:
    return "first | " + " | ".join(f"({tactic}; done)" for tactic in tactics)


def _normal_score(text: str) -> str:
    return " ".join(text.strip().lower().replace("_", " ").replace("-", " ").split())


def _spaced(binders: str) -> str:
    return f" {binders}" if binders else ""
