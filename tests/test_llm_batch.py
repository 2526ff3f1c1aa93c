"""The batch backend (`llm.backend: batch`) against a local server implementing the OpenAI
Batch API (/v1/files, /v1/batches): replies, prices, rounds, failures, and a build process
killed while its batch runs, resumed without submitting it again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from llm_mock_server import MockOpenAIServer, Reply

from mathsynth.config import LLMSettings, ModelPrice
from mathsynth.generators.llm import ChatRequest, LLMClient, LLMRequestError, LLMUnavailableError
from mathsynth.storage.catalog import Catalog

PRICES = {"mock": ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0)}


def _settings(srv: MockOpenAIServer, **kw: Any) -> LLMSettings:
    values: dict[str, Any] = {
        "base_url": srv.base_url,
        "model": "mock-model",
        "timeout_s": 5.0,
        "backend": "batch",
        "batch_poll_s": 0.02,
        "max_retries": 1,
        "prices": PRICES,
    }
    values.update(kw)
    return LLMSettings(**values)


def _ask(text: str, n: int = 1) -> ChatRequest:
    return ChatRequest(messages=[{"role": "user", "content": text}], n=n, temperature=0.5)


def _echo(request: dict[str, Any]) -> Reply:
    prompt = request["messages"][-1]["content"]
    return Reply(content=[f"{prompt} #{i}" for i in range(int(request.get("n") or 1))])


def _requests() -> list[ChatRequest]:
    return [_ask("alpha", n=3), _ask("beta"), _ask("gamma")]


def test_batch_replies_match_online_at_batch_prices(tmp_path: Path) -> None:
    with MockOpenAIServer(_echo) as srv:
        with LLMClient(_settings(srv), None, tmp_path / "ds" / "llm_cache.sqlite") as client:
            batch = client.complete_many(_requests())
            stats = dict(client.stats)
        with LLMClient(_settings(srv, backend="online"), None, None) as online_client:
            online = online_client.complete_many(_requests())
            online_cost = online_client.stats["cost_usd_micros"]
    assert all(isinstance(r, list) for r in batch + online)
    assert [[c.text for c in r] for r in batch] == [[c.text for c in r] for r in online]
    assert [c.text for c in batch[0]] == ["alpha #0", "alpha #1", "alpha #2"]
    # One batch of three lines (n=3 in one line), polled until done.
    assert len(srv.uploads) == 1 and len(srv.batches) == 1
    assert stats["batches_submitted"] == 1 and stats["requests"] == 3 and stats["batch_polls"] >= 1
    # Half the online price (ModelPrice's default batch discount), same tokens.
    assert stats["cost_usd_micros"] * 2 == online_cost
    # The input file is the OpenAI / vLLM batch JSONL.
    (data,) = srv.uploads.values()
    lines = [json.loads(line) for line in data.decode().splitlines()]
    assert {(x["method"], x["url"]) for x in lines} == {("POST", "/v1/chat/completions")}
    assert lines[0]["body"]["n"] == 3 and lines[0]["body"]["model"] == "mock-model"
    assert len({x["custom_id"] for x in lines}) == 3
    # The catalog next to the cache remembers the batch as done.
    (job,) = Catalog(tmp_path / "ds").llm_batches()
    assert job["status"] == "done" and job["batch_id"] in srv.batches and job["requests"] == 3


def test_explicit_batch_prices(tmp_path: Path) -> None:
    prices = {"mock": ModelPrice(input_per_mtok=2.0, output_per_mtok=8.0, batch_output_per_mtok=1)}
    with (
        MockOpenAIServer(lambda r: "one two") as srv,
        LLMClient(_settings(srv, prices=prices), None, None) as client,
    ):
        (result,) = client.complete_many([_ask("x y z")])
    assert isinstance(result, list)
    # 3 prompt tokens at 2.0 / 2 (the default discount), 2 reply tokens at 1.0.
    assert result[0].cost_usd == pytest.approx((3 * 1.0 + 2 * 1.0) / 1e6)


def test_second_round_for_ignored_n_and_transient_line_errors() -> None:
    seen: dict[str, int] = defaultdict(int)
    lock = threading.Lock()

    def flaky(request: dict[str, Any]) -> str | Reply:
        prompt = request["messages"][-1]["content"]
        with lock:
            seen[prompt] += 1
            count = seen[prompt]
        if prompt == "beta" and count == 1:
            return Reply.server_error()
        return f"{prompt} answer {count}"

    with (
        MockOpenAIServer(flaky, ignore_n=True) as srv,
        LLMClient(_settings(srv), None, None) as client,
    ):
        alpha, beta, gamma = client.complete_many(_requests())
    assert isinstance(alpha, list) and len(alpha) == 3  # 1 in round one, 2 more in round two
    assert isinstance(beta, list) and beta[0].text == "beta answer 2"
    assert isinstance(gamma, list)
    assert len(srv.batches) == 2


def test_expired_batch_leaves_the_unanswered_requests_rejected() -> None:
    with (
        MockOpenAIServer(_echo, expire_batches_after=1) as srv,
        LLMClient(_settings(srv), None, None) as client,
    ):
        first, *rest = client.complete_many(_requests())
    assert isinstance(first, list)
    assert all(isinstance(r, LLMRequestError) and r.code == "llm_batch_expired" for r in rest)
    assert len(srv.batches) == 1  # not a transient failure: no second round


def test_failed_batch_and_missing_batch_api_are_build_errors() -> None:
    with (
        MockOpenAIServer(_echo, fail_batches="line 1: unknown model") as srv,
        LLMClient(_settings(srv), None, None) as client,
        pytest.raises(LLMUnavailableError, match="failed: line 1: unknown model"),
    ):
        client.complete_many(_requests())
    with MockOpenAIServer(_echo) as srv:
        settings = _settings(srv, base_url=srv.base_url.replace("/v1", "/nothing"))
        with (
            LLMClient(settings, None, None) as client,
            pytest.raises(LLMUnavailableError, match="has no batch API"),
        ):
            client.complete_many(_requests())


WORKER = """
import sys
from pathlib import Path
from mathsynth.config import LLMSettings
from mathsynth.generators.llm import ChatRequest, LLMClient
settings = LLMSettings(base_url=sys.argv[1], model="mock-model", backend="batch",
                       batch_poll_s=0.02)
requests = [ChatRequest(messages=[{"role": "user", "content": t}], n=n, temperature=0.5)
            for t, n in (("alpha", 3), ("beta", 1), ("gamma", 1))]
with LLMClient(settings, None, Path(sys.argv[2])) as client:
    client.complete_many(requests)
print("finished")
"""


def _kill_after_submission(srv: MockOpenAIServer, cache: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WORKER, srv.base_url, str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not any(b["status"] == "in_progress" for b in srv.batches.values()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the worker never submitted its batch"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)  # a crash: no cleanup, no cancel
    proc.wait(30)
    return proc


@pytest.mark.parametrize("catalog_lost", [False, True], ids=["from-catalog", "from-server-list"])
def test_a_killed_run_resumes_its_batch_instead_of_paying_again(
    tmp_path: Path, catalog_lost: bool
) -> None:
    hold = threading.Event()
    out = tmp_path / "ds"
    out.mkdir()
    cache = out / "llm_cache.sqlite"
    with MockOpenAIServer(_echo, hold_batches=hold) as srv:
        proc = _kill_after_submission(srv, cache)
        assert proc.returncode == -signal.SIGKILL
        (batch_id,) = srv.batches
        (job,) = Catalog(out).llm_batches()
        assert (job["batch_id"], job["status"]) == (batch_id, "submitted")
        if catalog_lost:  # killed between creating the batch and recording it
            with Catalog(out).connect() as con:
                con.execute("DELETE FROM llm_batches")
        hold.set()
        with LLMClient(_settings(srv), None, cache) as client:
            results = client.complete_many(_requests())
            stats = dict(client.stats)
    assert all(isinstance(r, list) for r in results)
    assert [c.text for c in results[0]] == ["alpha #0", "alpha #1", "alpha #2"]
    assert len(srv.batches) == 1 and len(srv.uploads) == 1  # nothing submitted twice
    assert stats["batches_resumed"] == 1 and stats.get("batches_submitted", 0) == 0
    (job,) = Catalog(out).llm_batches()
    assert (job["batch_id"], job["status"]) == (batch_id, "done")


@pytest.mark.parametrize("backend", ["online", "batch"])
def test_the_same_request_twice_in_one_call_is_asked_once(backend: str) -> None:
    with (
        MockOpenAIServer(_echo) as srv,
        LLMClient(_settings(srv, backend=backend), None, None) as client,
    ):
        first, second, other = client.complete_many([_ask("alpha", 2), _ask("alpha", 2), _ask("b")])
        stats = dict(client.stats)
    assert isinstance(first, list) and isinstance(second, list) and isinstance(other, list)
    assert [c.text for c in first] == [c.text for c in second] == ["alpha #0", "alpha #1"]
    assert not any(c.cached for c in first) and all(c.cached for c in second)
    assert len(srv.requests) == 2
    # Paid once: the repeat adds no tokens.
    assert stats["tokens_out"] == sum(c.tokens_out for c in first + other)
