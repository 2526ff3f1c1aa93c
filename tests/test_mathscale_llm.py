"""MathScale with an LLM (scripted server on 127.0.0.1): concept extraction into the graph, and
generation kept only when the solution's answer and the program's output agree."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from llm_mock_server import MockOpenAIServer

from mathsynth.config import LLMSettings
from mathsynth.generators.llm import LLMClient
from mathsynth.generators.mathscale.concept_graph import ConceptGraph
from mathsynth.generators.mathscale.llm import MathScaleLLM, extract_concepts
from mathsynth.records import Problem, Rejection
from mathsynth.seeds import Seed, SeedTask
from mathsynth.verifiers.answers import AnswerChecker
from mathsynth.verifiers.sandbox import Sandbox

CONCEPTS = {
    "pears": (["Fractions"], ["equivalent fractions", "adding fractions"]),
    "boxes": (["fractions", "Ratios"], ["Equivalent fractions.", "simplifying ratios"]),
    "coins": (["money", "ratio"], ["simplifying ratios", "a", "b", "c", "d", "e", "f"]),
}


def concept_responder(request: dict[str, Any]) -> str:
    prompt = request["messages"][-1]["content"]
    key = next((k for k in CONCEPTS if k in prompt), None)
    if key is None:
        return "I think it is about numbers."
    topics, kps = CONCEPTS[key]
    return "```json\n" + json.dumps({"topics": topics, "knowledge_points": kps}) + "\n```"


def generation_responder(mode: str) -> Callable[[dict[str, Any]], str]:
    def respond(request: dict[str, Any]) -> str:
        prompt = request["messages"][-1]["content"]
        topics = re.search(r"Topics: (.+)", prompt)
        assert topics is not None
        returned = {"agree": "3 * 4", "disagree": "3 * 5", "error": "1 / 0"}[mode]
        return (
            f"Question: A problem about {topics.group(1)}: what is 3 times 4?\n"
            "Solution: 3 * 4 = 12\nThe answer is 12.\n"
            f"```python\ndef solution():\n    return {returned}\n```"
        )

    return respond


@pytest.fixture(scope="module")
def tools() -> Iterator[tuple[Sandbox, AnswerChecker]]:
    with Sandbox(workers=2, timeout_s=5.0) as sb, AnswerChecker(timeout_s=2.0) as checker:
        yield sb, checker


def seeds() -> list[Seed]:
    return [Seed(id=k, question=f"A question about {k}.", answer="1") for k in [*CONCEPTS, "vague"]]


def test_concept_extraction_builds_a_merged_graph(tmp_path: Path) -> None:
    graph = ConceptGraph()
    graph.add("pears", ["fractions"], ["equivalent fractions"])  # known: no request for it
    with MockOpenAIServer(concept_responder) as srv:
        settings = LLMSettings(base_url=srv.base_url, model="mock-model")
        with LLMClient(settings, None, None) as client:
            rejected = extract_concepts(client, seeds(), graph)
    assert len(srv.requests) == 3
    (vague,) = rejected
    assert vague.reason == "parse_no_json" and vague.record["seed_id"] == "vague"
    assert graph.members["boxes"] == (
        ("fraction", "ratio"),
        ("equivalent fraction", "simplifying ratio"),
    )
    # At most 5 knowledge points are kept; "ratio" merged with "Ratios" across seeds.
    assert graph.members["coins"] == (("money", "ratio"), ("simplifying ratio", "a", "b", "c", "d"))
    assert graph.counts[frozenset((("topic", "ratio"), ("kp", "simplifying ratio")))] == 2


def run_generation(
    tools: tuple[Sandbox, AnswerChecker], mode: str, tmp_path: Path
) -> tuple[list[Any], MockOpenAIServer]:
    graph = ConceptGraph()
    for seed_id, (topics, kps) in CONCEPTS.items():
        graph.add(seed_id, topics, kps)
    with MockOpenAIServer(generation_responder(mode)) as srv:
        settings = LLMSettings(base_url=srv.base_url, model="mock-model")
        with LLMClient(settings, None, tmp_path / f"{mode}.sqlite") as client:
            stage = MathScaleLLM(
                llm=client, sandbox=tools[0], checker=tools[1], graph=graph, seed=3
            )
            out = list(
                stage.run(SeedTask(generator="mathscale", seed=None, index=i) for i in range(4))
            )
    return out, srv


def test_agreeing_program_is_accepted(tools: tuple[Sandbox, AnswerChecker], tmp_path: Path) -> None:
    out, srv = run_generation(tools, "agree", tmp_path)
    assert len(out) == 4 and all(isinstance(p, Problem) for p in out)
    for p in out:
        assert isinstance(p, Problem)
        assert p.verification.status == "verified" and p.verification.checker == "agreement"
        assert "solution says 12, program returns 12" in p.verification.detail
        assert p.answer == "12" and p.method == "llm_concept_walk"
        assert p.question.startswith("A problem about") and "```" not in p.solution
        assert set(p.concepts) == set(p.provenance["walk"])
        assert p.tokens_in > 0
    # Each problem's walk is what its prompt asked for.
    prompts = {r["messages"][0]["content"] for r in srv.requests}
    for p in out:
        assert isinstance(p, Problem)
        walk_topics = [c for c in p.concepts if c in {"fraction", "ratio", "money"}]
        assert any(f"Topics: {'; '.join(walk_topics)}\n" in prompt for prompt in prompts)


@pytest.mark.parametrize(
    ("mode", "reason"), [("disagree", "program_disagrees"), ("error", "program_error")]
)
def test_disagreeing_program_is_rejected(
    tools: tuple[Sandbox, AnswerChecker], tmp_path: Path, mode: str, reason: str
) -> None:
    out, _ = run_generation(tools, mode, tmp_path)
    assert [r.reason for r in out if isinstance(r, Rejection)] == [reason] * 4
