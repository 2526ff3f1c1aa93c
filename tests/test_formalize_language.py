"""FormalizeFromLanguage against the mock OpenAI server (real HTTP on 127.0.0.1, the real
openai client) and the stand-in Lean REPL process (tests/fake_lean_repl.py).

The stand-in accepts any statement with `sorry`, fails commands holding FAKE_ERROR, and closes
every goal without `sorry` unless started with --weak-tactics (then no tactic closes any): so
under --weak-tactics hypotheses are consistent and nothing is proved, and without it the
`False` variant is "proved", i.e. the hypotheses are inconsistent.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_mock_server import MockOpenAIServer, Reply

from mathsynth.config import LLMSettings
from mathsynth.generators.formalize.llm import (
    SCORE_CRITERIA,
    FormalizeFromLanguage,
    parse_score,
    parse_theorem,
)
from mathsynth.generators.llm import LLMClient, ReplyParseError
from mathsynth.records import FormalStatement, Problem, Record, Rejection, Verification
from mathsynth.verifiers.lean import HEADER, LeanBackend, LeanItem, LeanResult, ReplBackend

FAKE = [sys.executable, str(Path(__file__).with_name("fake_lean_repl.py"))]
VERIFIED = Verification("verified", "exec", "solution() returned the answer")

GOOD_LEAN = (
    "Here is the formalization:\n```lean4\nimport Mathlib\nopen Real\n\n"
    "lemma apples (total : ℕ) (h₀ : total = 3 + 4) :\n    total = 7 := by\n  sorry\n```"
)
# What the model said for each problem, keyed by a word of its question.
TRANSLATIONS: dict[str, str | Reply] = {
    "GOOD": GOOD_LEAN,
    "POOR": "theorem t (x : ℝ) (h : x = 2) : x + 1 = 3 := by sorry",
    "BROKEN": "```lean\ntheorem t (x : FAKE_ERROR) : x = x := by sorry\n```",
    "PROSE": "The answer is 7 apples.",
    "TRUNCATED": Reply.truncated("```lean\ntheorem t (total : ℕ) (h₀ : total ="),
    "CUT": "```lean\ntheorem t (total : ℕ) (h₀ : total = 3 + 4) : total",
    "UNSCORED": "theorem t (n : ℕ) (h : n = 5) : n * 2 = 10 := by sorry",
}
SCORES: dict[str, str] = {
    "GOOD": json.dumps(
        {"criteria": {"faithfulness": "all numbers kept"}, "score": "good", "reason": "faithful"}
    ),
    "POOR": '```json\n{"score": "Poor", "reason": "the answer is not stated",}\n```',
    "UNSCORED": "It looks reasonable to me.",
    "BROKEN": "Score: above average",
}


def _problem(key: str, verified: bool = True) -> Problem:
    return Problem(
        generator="mugglemath",
        method="augment",
        seed_id="apples-1",
        question=f"{key}: Ann has 3 apples and buys 4. How many apples does she have?",
        solution="3 + 4 = 7\nThe answer is 7.",
        answer="7",
        verification=VERIFIED if verified else Verification("failed", "exec", "mismatch"),
        provenance={"config_hash": "abc", "pipeline_version": "0.1.0"},
    )


def _responder(request: dict[str, Any]) -> str | Reply:
    prompt = request["messages"][-1]["content"]
    key = prompt.split("Problem: ", 1)[1].split(":", 1)[0]
    return SCORES[key] if prompt.startswith("Below are a math problem") else TRANSLATIONS[key]


@pytest.fixture()
def server() -> Iterator[MockOpenAIServer]:
    with MockOpenAIServer(_responder, models=("mock",)) as srv:
        yield srv


@pytest.fixture()
def llm(server: MockOpenAIServer) -> Iterator[LLMClient]:
    settings = LLMSettings(base_url=server.base_url, model="mock", max_retries=0)
    client = LLMClient(settings, None, None)
    yield client
    client.close()


def _fake(*args: str) -> ReplBackend:
    return ReplBackend([*FAKE, *args], timeout_s=5.0, start_timeout_s=10.0)


def _run(
    llm: LLMClient, backend: LeanBackend | None, keys: list[str], **options: Any
) -> tuple[dict[str, Record], FormalizeFromLanguage]:
    """Each problem's FormalStatement or Rejection, keyed like the problem."""
    problems = {key: _problem(key) for key in keys}
    stage = FormalizeFromLanguage(llm=llm, lean=backend, seed=3, **options)
    out = list(stage.run(problems.values()))
    assert [r for r in out if isinstance(r, Problem)] == list(problems.values())
    by_id = {p.id: key for key, p in problems.items()}
    made: dict[str, Record] = {}
    for record in out:
        if isinstance(record, FormalStatement):
            made[by_id[record.source_id]] = record
        elif isinstance(record, Rejection):
            made[by_id[record.record["id"]]] = record
    assert len(made) == len(keys)
    return made, stage


def _reason(record: Record) -> str:
    assert isinstance(record, Rejection), record
    assert record.stage == "formalize_llm"
    return record.reason


def test_statements_are_kept_only_when_they_compile_score_well_and_are_consistent(
    llm: LLMClient, server: MockOpenAIServer
) -> None:
    keys = ["GOOD", "POOR", "BROKEN", "PROSE", "TRUNCATED", "CUT", "UNSCORED"]
    with _fake("--weak-tactics") as backend:
        made, stage = _run(llm, backend, keys)
    good = made["GOOD"]
    assert isinstance(good, FormalStatement)
    source = _problem("GOOD")
    assert good.formal_statement == (
        f"theorem fl_{source.id} (total : ℕ) (h₀ : total = 3 + 4) : total = 7 := by"
    )
    assert (good.lean_status, good.proof, good.header) == ("compiled", None, HEADER)
    assert good.lean_messages == ["warning 1:0: declaration uses 'sorry'"]
    assert good.informal.endswith("Answer: 7")
    provenance = good.provenance
    assert provenance["score"] == "good"
    assert provenance["score_reason"] == "faithful"
    assert provenance["score_notes"] == {"faithfulness": "all numbers kept"}
    assert provenance["score_criteria"] == list(SCORE_CRITERIA)
    assert provenance["consistency"] == "consistent"
    assert provenance["proof_attempt"]["statement"] == "not_proved"
    assert provenance["proof_attempt"]["negation"] == "not_proved"
    assert (provenance["method"], provenance["lean_backend"], provenance["seed"]) == (
        "language",
        "repl",
        3,
    )
    assert provenance["model"] == "mock" and len(provenance["request_hashes"]) == 2
    assert provenance["config_hash"] == "abc"

    assert _reason(made["POOR"]) == "low_score"
    assert "scored poor" in made["POOR"].detail
    broken = made["BROKEN"]
    assert _reason(broken) == "does_not_compile"
    assert "type mismatch" in broken.detail
    assert "FAKE_ERROR" in broken.record["formal_statement"]
    assert _reason(made["PROSE"]) == "parse_no_theorem"
    assert made["PROSE"].record["raw_reply"] == "The answer is 7 apples."
    assert _reason(made["TRUNCATED"]) == "llm_truncated"
    assert "h₀ : total =" in made["TRUNCATED"].record["raw_reply"]
    assert _reason(made["CUT"]) == "parse_incomplete_theorem"
    assert _reason(made["UNSCORED"]) == "parse_no_score"
    assert made["UNSCORED"].record["raw_reply"] == "It looks reasonable to me."

    # One translation request per problem, then one grading request per compiled statement.
    prompts = [r["messages"][-1]["content"] for r in server.requests]
    assert [p.startswith("Translate") for p in prompts] == [True] * 7 + [False] * 3
    assert HEADER in prompts[0]
    assert stage.stats["lean.compiled"] == 1
    assert stage.stats["rejected:low_score"] == 1


def test_a_false_goal_closed_by_automation_means_inconsistent_hypotheses(
    llm: LLMClient,
) -> None:
    with _fake() as backend:
        made, _ = _run(llm, backend, ["GOOD"])
    rejection = made["GOOD"]
    assert _reason(rejection) == "inconsistent_hypotheses"
    assert rejection.record["consistency"] == "inconsistent"
    assert rejection.record["score"] == "good"


class _Recording:
    """The stand-in REPL behind a recorder of the code it is asked to check."""

    def __init__(self, inner: ReplBackend) -> None:
        self.inner, self.name = inner, inner.name
        self.sent: list[str] = []

    def check(self, items: list[LeanItem]) -> list[LeanResult]:
        self.sent.extend(item.code for item in items)
        return self.inner.check(items)

    def close(self) -> None:
        self.inner.close()


def test_consistency_and_proof_attempts_are_checked_only_for_kept_statements(
    llm: LLMClient,
) -> None:
    with _fake("--weak-tactics") as backend:
        recording = _Recording(backend)
        _run(llm, recording, ["GOOD", "POOR"])
        without_proofs = _Recording(backend)
        made, _ = _run(llm, without_proofs, ["GOOD"], attempt_proofs=False)
    name, poor = f"fl_{_problem('GOOD').id}", f"fl_{_problem('POOR').id}"
    binders = "(total : ℕ) (h₀ : total = 3 + 4)"
    tactics = (
        "first | (norm_num; done) | (simp_all; done) | (linarith; done) | (nlinarith; done)"
        " | (omega; done) | (decide; done)"
    )
    # POOR compiles but is dropped by its score: no consistency check or proof is sent for it.
    assert recording.sent == [
        f"theorem {name} {binders} : total = 7 := by\n  sorry",
        f"theorem {poor} (x : ℝ) (h : x = 2) : x + 1 = 3 := by\n  sorry",
        f"theorem {name}_false {binders} : False := by\n  first | (simp_all; done)"
        " | (linarith; done) | (nlinarith; done) | (norm_num; done) | (omega; done)",
        f"theorem {name}_proof {binders} : total = 7 := by\n  {tactics}",
        f"theorem {name}_negation {binders} : ¬ (total = 7) := by\n  {tactics}",
    ]
    assert [code.split(" ", 2)[1] for code in without_proofs.sent] == [name, f"{name}_false"]
    assert "proof_attempt" not in made["GOOD"].provenance  # type: ignore[union-attr]


class _Routed:
    """Two stand-in REPLs: commands for the variants named in `strong` go to one that closes
    every goal, the rest to one where no tactic closes any (both real processes)."""

    name = "repl"

    def __init__(self, strong: set[str], closes: ReplBackend, closes_nothing: ReplBackend) -> None:
        self.strong, self.closes, self.closes_nothing = strong, closes, closes_nothing

    def check(self, items: list[LeanItem]) -> list[LeanResult]:
        return [
            (self.closes if self._variant(item) in self.strong else self.closes_nothing).check(
                [item]
            )[0]
            for item in items
        ]

    def close(self) -> None:
        pass

    @staticmethod
    def _variant(item: LeanItem) -> str:
        return item.code.split()[1].rsplit("_", 1)[-1]


def test_proof_attempts_record_both_outcomes(llm: LLMClient) -> None:
    with _fake() as closes, _fake("--weak-tactics") as closes_nothing:
        proved, _ = _run(llm, _Routed({"proof"}, closes, closes_nothing), ["GOOD"])
        refuted, _ = _run(llm, _Routed({"proof", "negation"}, closes, closes_nothing), ["GOOD"])
    good = proved["GOOD"]
    assert isinstance(good, FormalStatement)
    assert good.provenance["proof_attempt"]["statement"] == "proved"
    assert good.provenance["proof_attempt"]["negation"] == "not_proved"
    assert good.lean_status == "proved"
    assert good.proof is not None and good.proof.startswith("first | (norm_num; done)")
    # The answer was verified, so a statement whose negation Lean proves is unfaithful.
    rejection = refuted["GOOD"]
    assert _reason(rejection) == "negation_proved"
    assert rejection.record["proof_attempt"]["negation"] == "proved"


def test_without_lean_statements_are_unchecked_candidates_with_their_score(
    llm: LLMClient,
) -> None:
    made, stage = _run(llm, None, ["GOOD", "BROKEN"], attempt_proofs=True)
    good = made["GOOD"]
    assert isinstance(good, FormalStatement)
    assert good.lean_status == "unchecked"
    assert good.provenance["score"] == "good"
    assert good.provenance["consistency"] == "unchecked"
    assert "proof_attempt" not in good.provenance
    assert "no Lean backend" in good.lean_messages[0]
    # Nothing compiled it, so the broken statement is a candidate too, never "compiled".
    broken = made["BROKEN"]
    assert isinstance(broken, FormalStatement)
    assert (broken.lean_status, broken.provenance["score"]) == ("unchecked", "above average")
    assert stage.stats["lean.unchecked"] == 2


def test_a_dead_repl_leaves_candidates_unchecked(llm: LLMClient) -> None:
    with _fake("--fail-start") as backend:
        made, _ = _run(llm, backend, ["GOOD"])
    good = made["GOOD"]
    assert isinstance(good, FormalStatement)
    assert good.lean_status == "unchecked"
    assert "cannot find the Lean toolchain" in good.lean_messages[0]
    assert good.provenance["consistency"] == "unchecked"


def test_unverified_problems_cost_no_requests(llm: LLMClient, server: MockOpenAIServer) -> None:
    records = [_problem("GOOD", verified=False)]
    assert list(FormalizeFromLanguage(llm=llm).run(records)) == records
    assert server.requests == []


@pytest.mark.parametrize(
    ("reply", "binders", "goal"),
    [
        (GOOD_LEAN, "(total : ℕ) (h₀ : total = 3 + 4)", "total = 7"),
        ("theorem x : (2 : ℝ) + 2 = 4 := by\n  norm_num", "", "(2 : ℝ) + 2 = 4"),
        (
            "```lean\ntheorem x {a : ℕ} [Fact (1 < a)] (f : ℕ → ℕ := fun n => n)"
            " (h : ∀ n : ℕ, f n = n) :\n  ∀ y : ℕ, f y = y := sorry\n```",
            "{a : ℕ} [Fact (1 < a)] (f : ℕ → ℕ := fun n => n) (h : ∀ n : ℕ, f n = n)",
            "∀ y : ℕ, f y = y",
        ),
    ],
)
def test_parse_theorem(reply: str, binders: str, goal: str) -> None:
    theorem = parse_theorem(reply, "fl_1")
    assert (theorem.name, theorem.binders, theorem.goal) == ("fl_1", binders, goal)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty"),
        ("I'm sorry, I can't help with that.", "refusal"),
        ("def f : ℕ := 3", "no_theorem"),
        ("theorem x (h : a = 1 : a = 1", "incomplete_theorem"),
        ("theorem x (h : a = 1) := by sorry", "incomplete_theorem"),
    ],
)
def test_parse_theorem_failures(reply: str, reason: str) -> None:
    with pytest.raises(ReplyParseError) as info:
        parse_theorem(reply, "fl_1")
    assert info.value.reason == reason
    assert info.value.raw == reply


def test_parse_score() -> None:
    assert parse_score('{"score": "Above_Average", "reason": "ok"}') == ("above average", "ok", {})
    assert parse_score("Criteria look fine.\nScore: Excellent") == ("excellent", "", {})
    for reply in ('{"score": "brilliant"}', "good job"):
        with pytest.raises(ReplyParseError, match="score"):
            parse_score(reply)
