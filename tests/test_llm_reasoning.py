"""Reasoning models' replies (think blocks, reasoning fields) and per-kind token budgets,
through the real client against the local mock server."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from console import assert_one_line_error, mathsynth
from llm_mock_server import MockOpenAIServer, Reply

from mathsynth.config import LLMSettings, load_config
from mathsynth.errors import ConfigError
from mathsynth.generators.llm import (
    ChatRequest,
    Completion,
    LLMClient,
    LLMRequestError,
    RequestCache,
    usage_provenance,
)
from mathsynth.generators.llm.reasoning import split_reasoning

DRAFT = "Let me see: 3 * 4 = 13?\nNo wait.\nThe answer is 99."
ANSWER = "3 * 4 = 12\nThe answer is 12."


def _settings(srv: MockOpenAIServer, **kw: Any) -> LLMSettings:
    return LLMSettings(base_url=srv.base_url, model="mock-model", timeout_s=5.0, **kw)


def _one(client: LLMClient, request: ChatRequest | None = None) -> Completion:
    (result,) = client.complete_many([request or ChatRequest([{"role": "user", "content": "q"}])])
    assert isinstance(result, list), result
    return result[0]


@pytest.mark.parametrize(
    ("content", "answer", "reasoning"),
    [
        (f"<think>\n{DRAFT}\n</think>\n\n{ANSWER}", ANSWER, DRAFT),
        (f"  <THINK>{DRAFT}</THINK>{ANSWER}", ANSWER, DRAFT),  # tags are case-insensitive
        (f"{DRAFT}\n</think>\n{ANSWER}", ANSWER, DRAFT),  # the template opened the block
        (f"<think></think>\n\n{ANSWER}", ANSWER, ""),  # Qwen3 with thinking switched off
        (f"<think>a</think><think>b</think>{ANSWER}", ANSWER, "a\nb"),
        (ANSWER, ANSWER, ""),
        # Only a *leading* block is thinking; a tag later on belongs to the answer.
        (f"{ANSWER} <think>x</think>", f"{ANSWER} <think>x</think>", ""),
    ],
)
def test_split_reasoning(content: str, answer: str, reasoning: str) -> None:
    split = split_reasoning(content, None, ["think"])
    assert (split.answer, split.reasoning) == (answer, reasoning)
    assert not split.unterminated


def test_split_reasoning_cut_off_and_field() -> None:
    cut = split_reasoning(f"<think>{DRAFT}", None, ["think"])
    assert (cut.answer, cut.reasoning, cut.unterminated) == ("", DRAFT, True)
    field = split_reasoning(ANSWER, DRAFT, ["think"])
    assert (field.answer, field.reasoning, field.thought) == (ANSWER, DRAFT, True)
    other = split_reasoning(f"<reasoning>{DRAFT}</reasoning>{ANSWER}", None, ["reasoning"])
    assert other.answer == ANSWER
    # A tag that is not configured is content.
    assert split_reasoning(f"<think>{DRAFT}</think>x", None, ["reasoning"]).answer.startswith("<")


def test_think_block_is_stripped_kept_in_cache_and_counted(tmp_path: Path) -> None:
    content = f"<think>\n{DRAFT}\n</think>\n\n{ANSWER}"
    cache = tmp_path / "c.sqlite"
    with (
        MockOpenAIServer(lambda r: Reply(content=content)) as srv,
        LLMClient(_settings(srv), None, cache) as client,
    ):
        got = _one(client)
        stats = dict(client.stats)
    assert got.text == ANSWER and "99" not in got.text
    # The mock reports no reasoning count for content blocks: the share of the reply's text.
    words = len(content.split())
    assert got.tokens_out == words and 0 < got.reasoning_tokens < words
    assert stats["reasoning_tokens"] == got.reasoning_tokens
    assert stats["replies_with_reasoning"] == 1
    assert got.reasoning is None  # not kept in provenance unless asked
    assert usage_provenance([got])["reasoning_tokens"] == got.reasoning_tokens
    # The cache holds the reply as sent, thinking included, and its count.
    con = sqlite3.connect(cache)
    (text, thinking) = con.execute("SELECT text, reasoning_tokens FROM samples").fetchone()
    con.close()
    assert text == content and thinking == got.reasoning_tokens
    with (
        MockOpenAIServer(lambda r: "never asked") as srv2,
        LLMClient(_settings(srv2), None, cache) as client2,
    ):
        again = _one(client2)
    assert again.cached and again.text == ANSWER and srv2.requests == []


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_field_is_ignored_by_parsers_and_kept_on_request(field: str) -> None:
    reply = Reply(content=ANSWER, reasoning=DRAFT, reasoning_field=field)
    with (
        MockOpenAIServer(lambda r: reply) as srv,
        LLMClient(_settings(srv, keep_reasoning=True), None, None) as client,
    ):
        got = _one(client)
    assert got.text == ANSWER
    assert got.reasoning_tokens == len(DRAFT.split())  # the server's own count
    assert got.reasoning == DRAFT
    provenance = usage_provenance([got])
    assert provenance["reasoning"] == [DRAFT] and provenance["reasoning_tokens"] > 0


@pytest.mark.parametrize(
    "reply",
    [
        Reply(content=f"<think>\n{DRAFT}", finish_reason="length"),
        Reply(content="", reasoning=DRAFT, finish_reason="length"),
        Reply(content=f"<think>{DRAFT}</think>", finish_reason="stop"),
    ],
    ids=["cut-in-block", "field-only", "closed-then-nothing"],
)
def test_all_thinking_is_truncated_reasoning(reply: Reply) -> None:
    with (
        MockOpenAIServer(lambda r: reply) as srv,
        LLMClient(_settings(srv), None, None) as client,
    ):
        (result,) = client.complete_many([ChatRequest([{"role": "user", "content": "q"}])])
        stats = dict(client.stats)
    assert isinstance(result, LLMRequestError)
    assert result.code == "llm_truncated_reasoning"
    assert "llm.reasoning: true" in result.detail  # says what to change
    assert result.raw is not None and "The answer is 99" in result.raw
    assert stats["failed_truncated_reasoning"] == 1


def test_answer_cut_after_thinking_is_plain_truncation() -> None:
    reply = Reply(content=f"<think>{DRAFT}</think>3 * 4 =", finish_reason="length")
    with (
        MockOpenAIServer(lambda r: reply) as srv,
        LLMClient(_settings(srv), None, None) as client,
    ):
        (result,) = client.complete_many([ChatRequest([{"role": "user", "content": "q"}])])
    assert isinstance(result, LLMRequestError) and result.code == "llm_truncated"
    assert result.raw == "3 * 4 ="


def test_token_budgets_per_prompt_kind() -> None:
    with MockOpenAIServer(lambda r: "ok") as srv:
        settings = _settings(srv, max_tokens={"rise.self_edit": 200, "default": 900})
        with LLMClient(settings, None, None) as client:
            prompt = client.prompts.get("rise.self_edit")
            values = {"error_type": "swap_terms", "question": "q", "previous": "", "step": "s"}
            client.complete_many(
                [
                    prompt.request(values),
                    client.prompts.get("rise.sample").request({"question": "q"}),
                    ChatRequest([{"role": "user", "content": "x"}], max_tokens=77),
                ]
            )
        sent = {r["messages"][-1]["content"][:12]: r["max_tokens"] for r in srv.requests}
        assert sorted(sent.values()) == [77, 200, 900]
        with LLMClient(_settings(srv, reasoning=True), None, None) as thinking:
            thinking.complete_many([ChatRequest([{"role": "user", "content": "y"}])])
        assert srv.requests[-1]["max_tokens"] == 1024 + 8192


def test_budget_config_forms_and_errors(tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("llm:\n  max_tokens:\n    mathscale.generate: 2048\n    reasoning: 4096\n")
    config = load_config(file, **{"llm.max_tokens.default": 512})  # --llm-max-tokens 512
    assert config.llm.max_tokens == {"default": 512, "reasoning": 4096, "mathscale.generate": 2048}
    assert config.llm.budget("mathscale.generate") == 2048
    assert config.llm.budget("rise.sample") == 512
    with pytest.raises(ConfigError, match="is not a prompt kind"):
        load_config(**{"llm.max_tokens": {"Generate": 10}})
    with pytest.raises(ConfigError, match="must be positive"):
        load_config(**{"llm.max_tokens.default": 0})
    with pytest.raises(ConfigError, match="not a tag name"):
        load_config(**{"llm.think_tags": ["<think>"]})
    settings = LLMSettings(base_url="http://127.0.0.1:9/v1", model="m", max_tokens={"a.b": 5})
    with pytest.raises(ConfigError, match="unknown prompt kind 'a.b'"):
        LLMClient(settings, None, None)


def test_cache_written_before_reasoning_columns_still_opens(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.execute(
        "CREATE TABLE samples (key TEXT PRIMARY KEY, model TEXT NOT NULL, text TEXT NOT NULL,"
        " finish_reason TEXT NOT NULL, refusal TEXT, tokens_in INTEGER NOT NULL,"
        " tokens_out INTEGER NOT NULL, cost_usd REAL NOT NULL, created_at REAL NOT NULL)"
        " WITHOUT ROWID"
    )
    con.execute("INSERT INTO samples VALUES ('k', 'm', 'old reply', 'stop', NULL, 1, 2, 0.5, 0)")
    con.commit()
    con.close()
    cache = RequestCache(path)
    (sample,) = cache.get_many(["k"]).values()
    assert (sample.text, sample.reasoning, sample.reasoning_tokens) == ("old reply", None, 0)
    cache.close()


def test_llm_max_tokens_flag_sets_the_default_budget(tmp_path: Path) -> None:
    proc = mathsynth(
        "build",
        *("--out", str(tmp_path / "ds"), "--llm-max-tokens", "0"),
        *("--llm-base-url", "http://127.0.0.1:9/v1", "--llm-model", "m"),
    )
    assert_one_line_error(proc, "llm.max_tokens", "max_tokens.default must be positive")
    assert not (tmp_path / "ds").exists()
