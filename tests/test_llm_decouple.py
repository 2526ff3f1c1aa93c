"""LLM decoupling end to end: mock endpoint, real sandbox, real answer checker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_mock_server import MockOpenAIServer, Reply

from mathsynth.config import LLMSettings
from mathsynth.generators.infinitymath.llm import decouple_prompt, same_text
from mathsynth.generators.infinitymath.llm import decouple_with_llm as decouple
from mathsynth.generators.llm import LLMClient
from mathsynth.records import Rejection
from mathsynth.seeds import Seed, SeedSpec
from mathsynth.verifiers.answers import AnswerChecker
from mathsynth.verifiers.sandbox import Sandbox

APPLES = Seed(
    id="apples",
    question="Tom has 12 apples and buys 3 bags of 4 apples each. How many apples does he have?",
    answer="24",
)
PIES = Seed(
    id="pies",
    question="A pie costs $2.50. How much do 6 pies cost?",
    answer="15",
)
MARBLES = Seed(
    id="marbles", question="Ann has 7 marbles and loses 2. How many are left?", answer="5"
)
CUT = Seed(id="cut", question="What is 2 + 2?", answer="4")

GOOD_APPLES = {
    "question": (
        "Tom has {start} apples and buys {bags} bags of {per_bag} apples each. "
        "How many apples does he have?"
    ),
    "solution": "{bags} * {per_bag} = {bought}\n{start} + {bought} = {answer}",
    "program": (
        "def solution(start, bags, per_bag):\n"
        "    bought = bags * per_bag\n"
        "    total = start + bought\n"
        "    return total"
    ),
    "variables": {
        "start": {"type": "int", "min": 1, "max": 50, "default": 12},
        "bags": {"type": "int", "min": 1, "max": 9, "default": 3},
        "per_bag": {"type": "int", "min": 2, "max": 12, "default": 4},
    },
    "constraints": ["bags >= 1"],
    "answer_type": "int",
    "topics": ["arithmetic"],
    "knowledge_points": ["multiplication", "addition"],
    "difficulty": 1,
}


def _pies(program_factor: str) -> dict[str, Any]:
    return {
        "question": "A pie costs ${price:money}. How much do {count} pies cost?",
        "solution": "{price} * {count} = {answer}",
        "program": f"def solution(price, count):\n    return price * count * {program_factor}",
        "variables": {
            "price": {"type": "decimal", "min": 1, "max": 9, "default": 2.5, "places": 2},
            "count": {"type": "int", "min": 2, "max": 12, "default": 6},
        },
        "answer_type": "decimal",
    }


MARBLES_WRONG_TEXT = {
    "question": "Ann has {have} marbles and finds {lost}. How many are left?",
    "solution": "{have} - {lost} = {answer}",
    "program": "def solution(have, lost):\n    return have - lost",
    "variables": {
        "have": {"min": 3, "max": 20, "default": 7},
        "lost": {"min": 1, "max": 2, "default": 2},
    },
}


def _responder(request: dict[str, Any]) -> str | Reply:
    messages = request["messages"]
    problem = messages[1]["content"]
    repair = len(messages) > 2
    if "apples" in problem:
        return "Here is the template:\n```json\n" + json.dumps(GOOD_APPLES) + "\n```"
    if "pie" in problem:
        # First reply doubles the answer; the repair fixes it.
        return json.dumps(_pies("1" if repair else "2"))
    if "marbles" in problem:
        return json.dumps(MARBLES_WRONG_TEXT)  # wrong twice: "finds" is not "loses"
    return Reply.truncated('{"question": "What is {a} +')


@pytest.fixture(scope="module")
def verifiers() -> Iterator[tuple[Sandbox, AnswerChecker]]:
    with Sandbox(workers=1, timeout_s=5.0) as sandbox, AnswerChecker(workers=1) as checker:
        yield sandbox, checker


def test_decouple_accepts_only_what_reproduces_the_seed(
    tmp_path: Path, verifiers: tuple[Sandbox, AnswerChecker]
) -> None:
    sandbox, checker = verifiers
    seeds = [APPLES, PIES, MARBLES, CUT]
    with MockOpenAIServer(_responder) as srv:
        settings = LLMSettings(base_url=srv.base_url, model="mock-model")
        with LLMClient(settings, None, tmp_path / "cache.sqlite") as client:
            out = list(decouple(seeds, client, sandbox, checker))
        first_round = len(srv.requests)
        by_seed = {s.id: o for s, o in zip(seeds, out, strict=True)}

        apples = by_seed["apples"]
        assert isinstance(apples, SeedSpec)
        assert apples.default_values() == {"start": 12, "bags": 3, "per_bag": 4}
        pies = by_seed["pies"]
        assert isinstance(pies, SeedSpec) and "* 1" in pies.program  # the repaired program

        marbles = by_seed["marbles"]
        assert isinstance(marbles, Rejection)
        assert marbles.reason == "template_mismatch"
        assert marbles.detail.startswith("after one repair round")
        assert "finds" in marbles.record["raw_reply"] and marbles.record["first_reply"]

        cut = by_seed["cut"]
        assert isinstance(cut, Rejection) and cut.reason == "llm_truncated"
        assert cut.record["raw_reply"].startswith('{"question"')

        # 4 first-round prompts + 2 repairs (pies, marbles); the truncated one is not repaired.
        assert first_round == 6
        repair = next(
            r
            for r in srv.requests
            if "pie" in r["messages"][1]["content"][:40] and len(r["messages"]) > 2
        )
        assert "gold answer is 15" in repair["messages"][-1]["content"]

        # A rerun of the same batch is answered from the cache.
        with LLMClient(settings, None, tmp_path / "cache.sqlite") as client:
            again = list(decouple(seeds, client, sandbox, checker))
        assert len(srv.requests) == first_round
        assert [type(o) for o in again] == [type(o) for o in out]


def test_wrong_answer_twice_is_rejected_not_accepted(
    tmp_path: Path, verifiers: tuple[Sandbox, AnswerChecker]
) -> None:
    sandbox, checker = verifiers
    with MockOpenAIServer(lambda r: json.dumps(_pies("3"))) as srv:
        settings = LLMSettings(base_url=srv.base_url, model="mock-model")
        with LLMClient(settings, None, None) as client:
            (out,) = decouple([PIES], client, sandbox, checker)
    assert isinstance(out, Rejection) and out.reason == "answer_mismatch"
    assert "45" in out.detail and out.record["gold_answer"] == "15"


def test_unparseable_reply_gets_a_repair_round(
    tmp_path: Path, verifiers: tuple[Sandbox, AnswerChecker]
) -> None:
    sandbox, checker = verifiers

    def responder(request: dict[str, Any]) -> str:
        if len(request["messages"]) > 2:
            return json.dumps(GOOD_APPLES)
        return "Sure! {question: Tom has {start} apples"

    with MockOpenAIServer(responder) as srv:
        settings = LLMSettings(base_url=srv.base_url, model="mock-model")
        with LLMClient(settings, None, None) as client:
            (out,) = decouple([APPLES], client, sandbox, checker)
    assert isinstance(out, SeedSpec)
    assert (
        "malformed" in srv.requests[1]["messages"][-1]["content"]
        or "JSON" in (srv.requests[1]["messages"][-1]["content"])
    )


def test_same_text_compares_numbers_by_value() -> None:
    assert same_text("It costs $1.50 for 1,000 g.", "it costs  $1.5 for 1000 g.")
    assert not same_text("Ann has 7 marbles", "Ann has 8 marbles")
    assert not same_text("Ann loses 2", "Ann finds 2")


def test_prompt_carries_problem_and_gold() -> None:
    messages = decouple_prompt(PIES)
    assert messages[0]["role"] == "system" and "$2.50" in messages[1]["content"]
    assert "Gold answer: 15" in messages[1]["content"]
