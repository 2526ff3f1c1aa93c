"""RISE with an LLM, against the local mock OpenAI server (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from llm_mock_server import MockOpenAIServer, Reply

from mathsynth import registry
from mathsynth.config import LLMSettings, load_config
from mathsynth.generators.llm import LLMClient
from mathsynth.generators.rise.llm import RiseSelfEdit
from mathsynth.generators.rise.offline import RiseErrorInjection
from mathsynth.records import PreferencePair, Problem, Rejection, Verification
from mathsynth.stage import run_pipeline

QUESTION = "Tom has 3 boxes of 12 pens and gives away 9 pens. How many pens are left?"
SOLUTION = (
    "Tom has 3 x 12 = 36 pens.\nAfter giving some away he has 36 - 9 = 27 pens.\nThe answer is 27."
)
RIGHT = "He has 3 * 12 = 36 pens.\nThen 36 - 9 = 27 pens.\nThe answer is 27."
WRONG = "He has 3 * 12 = 36 pens.\nThen 36 + 9 = 45 pens.\nThe answer is 45."


def _current_step(request: dict[str, Any]) -> str:
    return request["messages"][-1]["content"].rsplit("Current step:\n", 1)[1]


def _bump_result(step: str) -> str:
    """The step with the result of its equation off by one: arithmetically false."""
    match = re.search(r"= (\d+)", step)
    assert match
    return step[: match.start(1)] + str(int(match.group(1)) + 1) + step[match.end(1) :]


def _responder(
    edit: Callable[[str], str], samples: list[str]
) -> Callable[[dict[str, Any]], str | Reply]:
    def respond(request: dict[str, Any]) -> str | Reply:
        if "Current step:" in request["messages"][-1]["content"]:
            return edit(_current_step(request))
        return Reply(content=samples[: request.get("n", 1)])

    return respond


def _run(
    edit: Callable[[str], str],
    samples: list[str] | None = None,
    answer: str = "27",
) -> tuple[list[Any], Any]:
    problem = Problem(
        "test",
        "hand",
        "s",
        QUESTION,
        SOLUTION,
        answer,
        verification=Verification("verified", "exec"),
    )
    other = Problem("test", "hand", "s2", QUESTION, SOLUTION, "27")  # unchecked: no requests
    responder = _responder(edit, samples or [WRONG, RIGHT, WRONG, RIGHT])
    with MockOpenAIServer(responder, models=("mock",)) as server:
        settings = LLMSettings(base_url=server.base_url, model="mock", max_retries=0)
        client = LLMClient(settings, None, None)
        try:
            stage = RiseSelfEdit(seed=1, llm=client, samples=4)
            out = list(stage.run([other, problem]))
        finally:
            client.close()
        return out, server


@pytest.fixture(scope="module")
def confirmed() -> Iterator[tuple[list[Any], Any]]:
    yield _run(_bump_result)


def test_self_edit_pair_is_confirmed_by_recomputation(confirmed: tuple[list[Any], Any]) -> None:
    out, server = confirmed
    assert out[0].seed_id == "s2" and out[1].seed_id == "s"
    assert len(server.requests) == 2  # one self-edit + one sampling request, none for unchecked
    (pair,) = [r for r in out if isinstance(r, PreferencePair) and r.error_type == "llm_self_edit"]
    assert pair.chosen_text == SOLUTION
    step = pair.step_index
    assert pair.rejected_text.split("\n")[:step] == SOLUTION.split("\n")[:step]
    assert pair.rejected_text.split("\n")[step] == _bump_result(SOLUTION.split("\n")[step])
    # The false result is carried on, so the rejected solution ends on a wrong answer.
    assert pair.verification.status == "verified"
    assert pair.provenance["consequence"] == "miscalculated"
    assert pair.rejected_text.split("\n")[-1] == "The answer is 28."
    assert pair.rejected_text[pair.edit_start : pair.edit_end] in pair.provenance["edited_step"]
    assert pair.spans and pair.prompt == [{"role": "user", "content": QUESTION}]


def test_sampled_pair_pairs_right_with_wrong(confirmed: tuple[list[Any], Any]) -> None:
    out, _ = confirmed
    (pair,) = [
        r for r in out if isinstance(r, PreferencePair) and r.error_type == "sampled_solution"
    ]
    assert (pair.chosen_text, pair.rejected_text) == (RIGHT, WRONG)
    assert pair.step_index == 1 and pair.rejected_text[pair.edit_start :].startswith("Then 36 + 9")
    assert pair.verification.checker == "answer_match"
    # The same conversational row format as the injected pairs.
    assert pair.chosen == [{"role": "assistant", "content": RIGHT}]
    assert pair.rejected == [{"role": "assistant", "content": WRONG}]
    assert [WRONG[s["start"] : s["end"]] for s in pair.spans] == ["+", "45", "45"]
    assert pair.provenance["answer_after"] == "45"


# Right answer through wrong arithmetic; a wrong one that pads its numbers with ".0".
LUCKY = "He has 3 * 12 = 35 pens.\nThen 35 - 9 = 27 pens.\nThe answer is 27."
PADDED = "He has 3 * 12 = 36.0 pens.\nThen 36.0 + 9 = 45.0 pens.\nThe answer is 45.0."


@pytest.mark.parametrize(
    ("samples", "reason", "chosen", "rejected"),
    [
        # Only a formatting-alike pair is made: the padded wrong sample is skipped.
        ([PADDED, RIGHT, WRONG], None, RIGHT, WRONG),
        ([PADDED, RIGHT, PADDED], "format_mismatch", None, None),
        # A right answer reached through false arithmetic is never the chosen side.
        ([LUCKY, WRONG, LUCKY, RIGHT], None, RIGHT, WRONG),
        ([LUCKY, WRONG, LUCKY, WRONG], "no_sampled_contrast", None, None),
    ],
)
def test_sampled_pairs_keep_the_guarantees(
    samples: list[str], reason: str | None, chosen: str | None, rejected: str | None
) -> None:
    out, _ = _run(_bump_result, samples=samples)
    pairs = [r for r in out if isinstance(r, PreferencePair) and r.error_type == "sampled_solution"]
    reasons = [r.reason for r in out if isinstance(r, Rejection)]
    if reason is None:
        (pair,) = pairs
        assert (pair.chosen_text, pair.rejected_text) == (chosen, rejected)
    else:
        assert pairs == [] and reason in reasons


def test_sampled_pairs_need_a_numeric_answer() -> None:
    out, _ = _run(_bump_result, answer="twenty-seven")
    assert "answer_not_numeric" in [r.reason for r in out if isinstance(r, Rejection)]
    assert not any(
        isinstance(r, PreferencePair) and r.error_type == "sampled_solution" for r in out
    )


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda step: step + " (this is a mistake)", "admits_error"),
        (lambda step: step, "unchanged"),
        (lambda step: step.replace("pens", "pencils"), "unconfirmed"),
    ],
)
def test_rise_filters_drop_bad_edits(edit: Callable[[str], str], reason: str) -> None:
    out, _ = _run(edit)
    rejections = [r for r in out if isinstance(r, Rejection)]
    assert [r.reason for r in rejections] == [reason]
    if reason == "unconfirmed":
        assert "unit_changed" in rejections[0].detail
    assert not any(isinstance(r, PreferencePair) and r.error_type == "llm_self_edit" for r in out)


def _consistent_slip(step: str) -> str:
    """Lower the second operand by one and recompute: a step that holds but is wrong."""
    match = re.search(r"(\d+) ([x-]) (\d+) = (\d+)", step)
    assert match
    a, op, b = int(match.group(1)), match.group(2), int(match.group(3)) - 1
    value = a * b if op == "x" else a - b
    return step[: match.start()] + f"{a} {op} {b} = {value}" + step[match.end() :]


def test_consistent_self_edit_propagates_to_a_changed_answer() -> None:
    out, _ = _run(_consistent_slip)
    (pair,) = [r for r in out if isinstance(r, PreferencePair) and r.error_type == "llm_self_edit"]
    assert pair.provenance["consequence"] == "propagated"
    assert pair.rejected_text.split("\n")[-1] != SOLUTION.split("\n")[-1]
    assert pair.provenance["answer_before"] == "27"


def test_self_edit_that_keeps_the_answer_is_dropped() -> None:
    # Rewrites the step's expression but keeps its result: later steps and the answer stay.
    def keep_result(step: str) -> str:
        return step.replace("3 x 12 = 36", "4 x 12 = 36").replace("36 - 9 = 27", "36 - 8 = 27")

    out, _ = _run(keep_result)
    (rejection,) = [r for r in out if isinstance(r, Rejection)]
    assert rejection.reason == "unconfirmed" and "value_unchanged" in rejection.detail


def test_rise_with_an_llm_runs_rule_then_llm_stages() -> None:
    problem = Problem(
        "test", "hand", "s", QUESTION, SOLUTION, "27", verification=Verification("verified", "x")
    )
    with MockOpenAIServer(_responder(_bump_result, [WRONG, RIGHT]), models=("mock",)) as server:
        client = LLMClient(LLMSettings(base_url=server.base_url, model="mock"), None, None)
        try:
            ctx = SimpleNamespace(llm=client, config=load_config(seed=0))
            rule, llm = registry.get("rise").stages(ctx)
            out = list(run_pipeline(None, [rule, llm], [problem]))
        finally:
            client.close()
    assert isinstance(rule, RiseErrorInjection) and isinstance(llm, RiseSelfEdit)
    types = sorted(r.error_type for r in out if isinstance(r, PreferencePair))
    assert len(types) == 3 and "llm_self_edit" in types and "sampled_solution" in types
    assert rule.stats["pairs"] == 1 and llm.stats["pairs.sampled_solution"] == 1
