"""Reply parsing, retry timing and cost accounting: pure functions."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from mathsynth.config import ModelPrice
from mathsynth.generators.llm.accounting import cost_usd, price_for, split_evenly
from mathsynth.generators.llm.errors import ReplyParseError
from mathsynth.generators.llm.parsing import (
    extract_code,
    extract_final_answer,
    extract_json,
    extract_json_object,
    is_refusal,
)
from mathsynth.generators.llm.retry import RetryPolicy, retry_after_s


def _reason(call, *args) -> str:  # type: ignore[no-untyped-def]
    with pytest.raises(ReplyParseError) as info:
        call(*args)
    return info.value.reason


def test_json_in_prose_fences_and_with_trailing_commas() -> None:
    assert extract_json('Sure!\n```json\n{"a": 1,}\n```\nDone.') == {"a": 1}
    assert extract_json('The result is {"a": "x}y", "b": [1, 2]} as asked.') == {
        "a": "x}y",
        "b": [1, 2],
    }
    assert extract_json("[1, 2, 3]") == [1, 2, 3]


def test_json_failures_have_reasons_and_raw_text() -> None:
    assert _reason(extract_json, '{"question": "What is {a} +') == "malformed_json"
    assert _reason(extract_json, "no structure here") == "no_json"
    assert _reason(extract_json, "   ") == "empty"
    assert _reason(extract_json, "I'm sorry, but I can't help with that.") == "refusal"
    assert _reason(extract_json_object, "[1]", ()) == "bad_fields"
    assert _reason(extract_json_object, '{"a": 1}', ("a", "b")) == "bad_fields"
    with pytest.raises(ReplyParseError) as info:
        extract_json("{broken")
    assert info.value.raw == "{broken"
    assert info.value.rejected_input({"k": 1}) == {"k": 1, "raw_reply": "{broken"}
    assert info.value.code == "parse_malformed_json"


def test_refusal_only_at_the_start() -> None:
    assert is_refusal("I cannot assist with this request.")
    assert is_refusal("As an AI, I won't")
    assert not is_refusal("First, I cannot see a shortcut, so compute 3 * 4 = 12.")


def test_code_blocks_last_python_block_wins_and_unclosed_fence_counts() -> None:
    text = "```python\ndef solution():\n    return 1\n```\nfixed:\n```python\ndef solution():\n"
    assert extract_code(text) == "def solution():"
    assert _reason(extract_code, "just words") == "no_code"


def test_final_answers() -> None:
    assert extract_final_answer(r"so \boxed{\frac{3}{4}} is it") == r"\frac{3}{4}"
    assert extract_final_answer("steps\n#### 72") == "72"
    assert extract_final_answer("Thus, the answer is $18.") == "18"
    assert _reason(extract_final_answer, "no idea") == "no_answer"


def test_retry_after_forms_and_backoff_bounds() -> None:
    assert retry_after_s({"Retry-After": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert 25 < (retry_after_s({"Retry-After": later}) or 0) <= 30
    assert retry_after_s({"Retry-After": "soon"}) is None
    policy = RetryPolicy(base_s=1.0, cap_s=8.0, max_retry_after_s=5.0)
    rng = random.Random(0)
    for attempt in range(6):
        delay = policy.backoff(attempt, rng)
        assert 0.5 * min(8.0, 2**attempt) <= delay <= min(8.0, 2**attempt)
    assert policy.delay(0, {"Retry-After": "3600"}) == 5.0


def test_prices_and_token_split() -> None:
    prices = {"gpt-4o": ModelPrice(input_per_mtok=2.5, output_per_mtok=10.0)}
    assert price_for(prices, "gpt-4o-2024-08-06") is prices["gpt-4o"]
    assert price_for(prices, "llama") is None
    assert cost_usd(prices, "gpt-4o", 1_000_000, 100_000) == pytest.approx(3.5)
    assert cost_usd(prices, "qwen", 10, 10) == 0.0
    assert split_evenly(7, 3) == [3, 2, 2] and sum(split_evenly(0, 4)) == 0
