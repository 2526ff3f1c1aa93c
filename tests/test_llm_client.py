"""LLMClient against the local mock server: real sockets, the real openai SDK."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from llm_mock_server import MockOpenAIServer, Reply

from mathsynth.config import LLMSettings, ModelPrice
from mathsynth.generators.llm import (
    ChatRequest,
    Completion,
    LLMClient,
    LLMRequestError,
    LLMUnavailableError,
    RetryPolicy,
    usage_provenance,
)
from mathsynth.stage import Stage

FAST_RETRY = RetryPolicy(base_s=0.01, cap_s=0.05)


def _ask(text: str, n: int = 1, **kw: Any) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], n=n, **kw)


def _settings(srv: MockOpenAIServer, **kw: Any) -> LLMSettings:
    values: dict[str, Any] = {"base_url": srv.base_url, "model": "mock-model", "timeout_s": 2.0}
    values.update(kw)
    return LLMSettings(**values)


def _prompt(request: dict[str, Any]) -> str:
    return request["messages"][-1]["content"]


class FaultOnce:
    """Responder that answers a prompt's first `times` requests with a fault, then normally."""

    def __init__(self, faults: dict[str, Reply], times: int = 1) -> None:
        self.faults = faults
        self.times = times
        self.seen: dict[str, int] = defaultdict(int)
        self.lock = threading.Lock()

    def __call__(self, request: dict[str, Any]) -> str | Reply:
        prompt = _prompt(request)
        with self.lock:
            self.seen[prompt] += 1
            count = self.seen[prompt]
        if prompt in self.faults and count <= self.times:
            return self.faults[prompt]
        return f"answer to {prompt}"


def test_samples_tokens_and_order(tmp_path: Path) -> None:
    prices = {"mock": ModelPrice(input_per_mtok=1.0, output_per_mtok=2.0)}
    with (
        MockOpenAIServer(lambda r: Reply(content=["one two", "three four five"])) as srv,
        LLMClient(_settings(srv, prices=prices), None, tmp_path / "c.sqlite") as client,
    ):
        results = client.complete_many([_ask("a b c", n=2), _ask("d")])
    first, second = results
    assert isinstance(first, list) and isinstance(second, list)
    assert [c.text for c in first] == ["one two", "three four five"]
    assert len(second) == 1
    # The server billed prompt 3 + completion 5 for the first request; the split adds up.
    assert sum(c.tokens_in for c in first) == 3 and sum(c.tokens_out for c in first) == 5
    assert client.stats["tokens_in"] == 4 and client.stats["requests"] == 2
    # "mock" prefixes "mock-model": 4 tokens in at $1/M, 5 + 2 out at $2/M.
    assert client.stats["tokens_out"] == 7
    assert client.stats["cost_usd_micros"] == 4 * 1 + 7 * 2
    assert sum(c.cost_usd for c in first + second) == pytest.approx(18e-6)
    prov = usage_provenance(first)
    assert prov["tokens_out"] == 5 and prov["cached"] is False and len(prov["request_hashes"]) == 2
    assert srv.requests[0]["n"] == 2


def test_rerun_sends_zero_requests_and_edits_invalidate_one_prompt(tmp_path: Path) -> None:
    cache = tmp_path / "llm_cache.sqlite"
    prompts = [_ask(f"question {i}", n=2, temperature=0.9) for i in range(5)]
    with MockOpenAIServer(lambda r: "reply " + _prompt(r)) as srv:
        with LLMClient(_settings(srv), None, cache) as client:
            first = client.complete_many(prompts)
        assert len(srv.requests) == 5
        with LLMClient(_settings(srv), None, cache) as client:
            again = client.complete_many(prompts)
            assert client.stats["requests"] == 0 and client.stats["cache_hits"] == 10
        assert len(srv.requests) == 5  # not even the endpoint check ran
        assert all(isinstance(r, list) and all(c.cached for c in r) for r in again)
        assert [[c.text for c in r] for r in again] == [[c.text for c in r] for r in first]  # type: ignore[union-attr]

        edited = list(prompts)
        edited[2] = _ask("question 2, reworded", n=2, temperature=0.9)
        with LLMClient(_settings(srv), None, cache) as client:
            client.complete_many(edited)
            assert client.stats["requests"] == 1 and client.stats["cache_hits"] == 8
        # Asking for more samples of a cached prompt fetches only the new ones.
        with LLMClient(_settings(srv), None, cache) as client:
            more = client.complete_many([_ask("question 0", n=3, temperature=0.9)])
            assert client.stats["cache_hits"] == 2 and client.stats["requests"] == 1
        assert srv.requests[-1].get("n", 1) == 1
        assert isinstance(more[0], list) and len(more[0]) == 3


def test_transient_faults_are_retried(tmp_path: Path) -> None:
    faults = {
        "rate": Reply.rate_limited(retry_after=0.3),
        "boom": Reply.server_error(),
        "slow": Reply.slow(1.5),
        "garbled": Reply.malformed_body(),
    }
    responder = FaultOnce(faults)
    with MockOpenAIServer(responder) as srv:
        settings = _settings(srv, timeout_s=0.5, max_retries=2)
        with LLMClient(settings, None, tmp_path / "c.sqlite", retry=FAST_RETRY) as client:
            start = time.monotonic()
            results = client.complete_many([_ask(p) for p in faults])
            elapsed = time.monotonic() - start
    for prompt, result in zip(faults, results, strict=True):
        assert isinstance(result, list), (prompt, result)
        assert result[0].text == f"answer to {prompt}"
    assert client.stats["retries"] == 4
    assert elapsed >= 0.3  # the 429's Retry-After was waited out, not the 10 ms backoff


def test_persistent_faults_become_errors_with_raw_reply(tmp_path: Path) -> None:
    faults = {
        "cut": Reply.truncated("Let x be the number of apples. Then"),
        "blank": Reply.empty(),
        "always500": Reply.server_error(),
        "alwaysgarbled": Reply.malformed_body(),
    }
    cache = tmp_path / "c.sqlite"
    with MockOpenAIServer(FaultOnce(faults, times=99)) as srv:
        settings = _settings(srv, max_retries=1)
        with LLMClient(settings, None, cache, retry=FAST_RETRY) as client:
            results = client.complete_many([_ask(p) for p in faults])
        errors = dict(zip(faults, results, strict=True))
        assert all(isinstance(e, LLMRequestError) for e in errors.values())
        assert errors["cut"].reason == "truncated"  # type: ignore[union-attr]
        assert errors["cut"].raw == "Let x be the number of apples. Then"  # type: ignore[union-attr]
        assert errors["blank"].reason == "empty"  # type: ignore[union-attr]
        assert errors["always500"].reason == "http_500"  # type: ignore[union-attr]
        assert errors["alwaysgarbled"].reason == "malformed_response"  # type: ignore[union-attr]
        assert "choices" in (errors["alwaysgarbled"].raw or "")  # type: ignore[union-attr]
        stage = Stage()
        rejection = errors["cut"].to_rejection(stage, {"seed_id": "s1"})  # type: ignore[union-attr]
        assert rejection.reason == "llm_truncated" and stage.stats["rejected:llm_truncated"] == 1
        assert rejection.record["raw_reply"].startswith("Let x be")
        # Answered-but-unusable replies were paid for: a rerun replays them from the cache.
        # Transport failures were not answered, so they are asked again.
        before = len(srv.requests)
        with LLMClient(settings, None, cache, retry=FAST_RETRY) as client:
            again = client.complete_many([_ask("cut"), _ask("blank")])
        assert len(srv.requests) == before
        assert [e.reason for e in again] == ["truncated", "empty"]  # type: ignore[union-attr]


def test_partial_samples_drop_only_the_bad_ones(tmp_path: Path) -> None:
    def responder(request: dict[str, Any]) -> Reply:
        return Reply(content=["good one", "   "])

    with MockOpenAIServer(responder) as srv, LLMClient(_settings(srv), None, None) as client:
        (result,) = client.complete_many([_ask("x", n=2)])
    assert isinstance(result, list) and [c.text for c in result] == ["good one"]
    assert client.stats["samples_dropped"] == 1


def test_server_ignoring_n_gets_separate_requests(tmp_path: Path) -> None:
    counter = iter(range(1000))
    with (
        MockOpenAIServer(lambda r: f"sample {next(counter)}", ignore_n=True) as srv,
        LLMClient(_settings(srv), None, tmp_path / "c.sqlite") as client,
    ):
        (first,) = client.complete_many([_ask("p", n=3, temperature=1.0)])
        (second,) = client.complete_many([_ask("q", n=2, temperature=1.0)])
    assert isinstance(first, list) and len({c.text for c in first}) == 3
    assert isinstance(second, list) and len(second) == 2
    assert [r.get("n", 1) for r in srv.requests] == [3, 1, 1, 1, 1]
    assert len({c.request_hash for c in first}) == 3


def test_concurrency_counts_requests_and_threads_share_the_bound() -> None:
    with MockOpenAIServer(latency_s=0.05) as srv:
        client = LLMClient(_settings(srv, concurrency=4), None, None)
        out: list[list[Any]] = []

        def batch(tag: str) -> None:
            out.append(client.complete_many([_ask(f"{tag}{i}", n=1) for i in range(20)]))

        threads = [threading.Thread(target=batch, args=(t,)) for t in "ab"]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        client.close()
    assert len(srv.requests) == 40 and all(len(r) == 20 for r in out)
    assert srv.max_in_flight == 4


def test_unknown_model_is_fatal_and_named(tmp_path: Path) -> None:
    with MockOpenAIServer(models=("served-a", "served-b")) as srv:
        client = LLMClient(_settings(srv, model="gpt-nope"), None, None)
        with pytest.raises(LLMUnavailableError, match=r"unknown model 'gpt-nope'.*served-a"):
            client.complete_many([_ask("x"), _ask("y")])
        client.close()


def test_unreachable_endpoint_fails_fast_with_one_line() -> None:
    settings = LLMSettings(base_url="http://127.0.0.1:9/v1", model="m", timeout_s=5.0)
    client = LLMClient(settings, None, None, retry=FAST_RETRY)
    start = time.monotonic()
    with pytest.raises(LLMUnavailableError) as info:
        client.complete_many([_ask("x")])
    client.close()
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "cannot reach the LLM endpoint http://127.0.0.1:9/v1" in message
    assert "\n" not in message


def test_wrong_path_is_reported_as_a_base_url_problem(tmp_path: Path) -> None:
    with MockOpenAIServer() as srv:
        settings = LLMSettings(base_url=srv.base_url.removesuffix("/v1"), model="mock-model")
        with (
            LLMClient(settings, None, None) as client,
            pytest.raises(LLMUnavailableError, match="check --llm-base-url"),
        ):
            client.complete_many([_ask("x")])


def test_missing_endpoint_says_what_to_set() -> None:
    with pytest.raises(LLMUnavailableError, match="--llm-base-url and --llm-model"):
        LLMClient(LLMSettings(), None, None)
    with pytest.raises(LLMUnavailableError, match="set --llm-model"):
        LLMClient(LLMSettings(base_url="http://127.0.0.1:1/v1"), None, None)


def test_api_key_is_sent_but_never_logged_or_stored(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    sentinel = "sk-SENTINEL-7f3a9c1e-do-not-leak"
    faults = {"rate": Reply.rate_limited(0.01), "cut": Reply.truncated()}
    caplog.set_level(logging.DEBUG)
    with MockOpenAIServer(FaultOnce(faults, times=1)) as srv:
        settings = _settings(srv, max_retries=1)
        client = LLMClient(settings, sentinel, tmp_path / "cache.sqlite", retry=FAST_RETRY)
        results = client.complete_many([_ask("rate"), _ask("cut"), _ask("fine")])
        text = repr(client) + repr(results) + repr(client.stats)
        client.close()
    assert srv.headers[0]["Authorization"] == f"Bearer {sentinel}"
    captured = capfd.readouterr()
    assert sentinel not in caplog.text + captured.out + captured.err + text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert sentinel.encode() not in path.read_bytes(), path


def test_completion_is_frozen_value() -> None:
    c = Completion("t", "stop", 1, 2, 0.0, False, "m", "h")
    with pytest.raises(AttributeError):
        c.text = "x"  # type: ignore[misc]
