"""MuggleMath with an LLM (a scripted OpenAI-compatible server on 127.0.0.1): rewrites are kept
only when sampled reasoning paths agree with each other and with their programs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_mock_server import MockOpenAIServer, Reply

from mathsynth.config import LLMSettings
from mathsynth.generators.llm import LLMClient
from mathsynth.generators.mugglemath.llm import LLM_STRATEGIES, MuggleMathLLM
from mathsynth.records import Problem, Rejection
from mathsynth.seeds import Seed, SeedTask
from mathsynth.verifiers.answers import AnswerChecker
from mathsynth.verifiers.sandbox import Sandbox

# Scenario name → (stated answers of the 4 paths, what each path's program returns).
SCENARIOS: dict[str, tuple[list[str], list[str]]] = {
    "AGREE": (["12", "12", "12.0", "13"], ["12", "12", "12", "13"]),
    "SPLIT": (["5", "7", "9", "11"], ["5", "7", "9", "11"]),
    "BADPROG": (["12", "12", "12", "12"], ["13", "13", "13", "13"]),
    "NOCODE": (["12", "12", "12", "12"], []),
}


def path(answer: str, program_value: str | None) -> str:
    steps = f"3 * 4 = 12\nThe answer is {answer}."
    if program_value is None:
        return steps
    return f"{steps}\n\n```python\ndef solution():\n    x = 3 * 4\n    return {program_value}\n```"


def responder(request: dict[str, Any]) -> str | Reply:
    prompt = request["messages"][-1]["content"]
    scenario = next(name for name in SCENARIOS if name in prompt)
    if "Rewrite the given question" in prompt:
        if "FAILREWRITE" in prompt:
            return "Sure! Here is a question: what is 3 times 4"
        return json.dumps({"question": f"Tom has 3 bags of 4 apples ({scenario}). How many?"})
    answers, programs = SCENARIOS[scenario]
    values: list[str | None] = list(programs) if programs else [None] * 4
    return Reply(content=[path(a, p) for a, p in zip(answers, values, strict=True)])


def seed_task(marker: str, index: int = 0) -> SeedTask:
    seed = Seed(
        id=f"s-{marker.lower()}", question=f"Sam has 2 bags of 5 pears ({marker}).", answer="10"
    )
    return SeedTask(generator="mugglemath", seed=seed, index=index)


@pytest.fixture(scope="module")
def tools() -> Iterator[tuple[Sandbox, AnswerChecker]]:
    with Sandbox(workers=2, timeout_s=5.0) as sb, AnswerChecker(timeout_s=2.0) as checker:
        yield sb, checker


def run(
    tools: tuple[Sandbox, AnswerChecker], tasks: list[SeedTask], tmp_path: Path, **kw: Any
) -> tuple[list[Any], MockOpenAIServer, MuggleMathLLM]:
    with MockOpenAIServer(responder) as srv:
        settings = LLMSettings(base_url=srv.base_url, model="mock-model", samples=4, **kw)
        with LLMClient(settings, None, tmp_path / "cache.sqlite") as client:
            stage = MuggleMathLLM(
                llm=client, sandbox=tools[0], checker=tools[1], settings=settings, seed=0
            )
            out = list(stage.run(tasks))
    return out, srv, stage


def test_agreement_is_accepted_with_votes(
    tools: tuple[Sandbox, AnswerChecker], tmp_path: Path
) -> None:
    (record,), srv, stage = run(tools, [seed_task("AGREE", index=1)], tmp_path)
    assert isinstance(record, Problem)
    assert record.verification.status == "verified"
    assert record.verification.checker == "agreement"
    assert "votes 3/4 for 12" in record.verification.detail  # "12.0" counts as 12
    assert record.answer == "12" and record.method == "llm_" + LLM_STRATEGIES[1]
    assert "def solution():" in (record.program or "") and "```" not in record.solution
    assert record.question.startswith("Tom has 3 bags") and record.tokens_out > 0
    assert record.provenance["model"] == "mock-model"
    rewrite, solve = srv.requests
    assert "fractions or percentages" in rewrite["messages"][0]["content"]
    assert solve["n"] == 4 and solve["temperature"] >= 0.9
    assert stage.stats["accepted"] == 1 and stage.stats["llm_requests"] == 2


def test_disagreement_is_rejected(tools: tuple[Sandbox, AnswerChecker], tmp_path: Path) -> None:
    out, _, stage = run(
        tools, [seed_task("SPLIT"), seed_task("BADPROG"), seed_task("NOCODE")], tmp_path
    )
    split, badprog, nocode = out
    assert isinstance(split, Rejection) and split.reason == "no_majority"
    assert "votes 1/4" in split.detail
    assert split.record["votes"]["answers"] == ["5", "7", "9", "11"]
    assert isinstance(badprog, Rejection) and badprog.reason == "program_disagrees"
    assert isinstance(nocode, Rejection) and nocode.reason == "no_paths"
    assert stage.stats["rejected:no_majority"] == 1


def test_threshold_is_configurable(tools: tuple[Sandbox, AnswerChecker], tmp_path: Path) -> None:
    (record,), _, _ = run(tools, [seed_task("AGREE")], tmp_path, agreement_threshold=0.8)
    assert isinstance(record, Rejection) and record.reason == "no_majority"


def test_unparseable_rewrite_is_rejected_with_raw_reply(
    tools: tuple[Sandbox, AnswerChecker], tmp_path: Path
) -> None:
    (record,), srv, _ = run(tools, [seed_task("AGREE FAILREWRITE")], tmp_path)
    assert isinstance(record, Rejection) and record.reason == "parse_no_json"
    assert "what is 3 times 4" in record.record["raw_reply"]
    assert len(srv.requests) == 1  # nothing is solved for a rewrite that failed


def test_rerun_is_served_from_the_cache(
    tools: tuple[Sandbox, AnswerChecker], tmp_path: Path
) -> None:
    first, _, _ = run(tools, [seed_task("AGREE")], tmp_path)
    again, srv, _ = run(tools, [seed_task("AGREE")], tmp_path)
    assert [r.id for r in again] == [r.id for r in first]
    assert srv.requests == []
