"""A local OpenAI-compatible server for tests and benchmarks: real sockets, scripted replies.

Use it as a context manager; it serves `/v1/chat/completions` and `/v1/models` on 127.0.0.1
at a random free port from a background thread:

    def responder(request: dict) -> str | Reply:
        prompt = request["messages"][-1]["content"]
        if "decouple" in prompt:
            return '{"template": "..."}'          # plain text reply, finish_reason "stop"
        return Reply.rate_limited(retry_after=0.1)  # or any other fault below

    with MockOpenAIServer(responder, models=("mock-model",)) as srv:
        client = LLMClient(LLMSettings(base_url=srv.base_url, model="mock-model"), None, None)
        ...
        assert len(srv.requests) == 3             # every chat request received, in order

The responder is called once per chat request (from the server thread) with the request's JSON
body and returns a `str` or a `Reply`. Faults: `Reply.rate_limited` (429 + Retry-After),
`Reply.server_error` (500), `Reply.slow` (delay, e.g. beyond the client's timeout),
`Reply.malformed_body` (200 with a body that is not JSON), `Reply.truncated`
(finish_reason "length"), `Reply.empty` (empty content). A request for a model not in `models`
gets a 404 `model_not_found`, as vLLM and OpenAI answer. A responder that raises gets a 500.

`max_in_flight` is the peak number of chat requests answered at once (for concurrency limits);
`headers` lists each chat request's HTTP headers, in the order of `requests`.

Run it as a script (`python tests/llm_mock_server.py --latency 0.1`) to serve from another
process: it prints `PORT <n>` once listening and answers every prompt with a small JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Reply:
    """One scripted reply. `content` may be a list to give each of `n` choices its own text."""

    content: str | list[str] = ""
    finish_reason: str = "stop"
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None  # sent verbatim instead of a chat completion when set

    @classmethod
    def rate_limited(cls, retry_after: float = 1.0) -> Reply:
        return cls(
            status=429,
            headers={"Retry-After": f"{retry_after:g}"},
            raw_body=_error_body("Rate limit reached", "rate_limit_exceeded"),
        )

    @classmethod
    def server_error(cls, status: int = 500) -> Reply:
        return cls(status=status, raw_body=_error_body("Internal server error", "server_error"))

    @classmethod
    def slow(cls, delay_s: float, content: str = "late") -> Reply:
        return cls(content=content, delay_s=delay_s)

    @classmethod
    def malformed_body(cls) -> Reply:
        return cls(raw_body='{"id": "chatcmpl-1", "choices": [{"message": ')

    @classmethod
    def truncated(cls, content: str = "The answer is") -> Reply:
        return cls(content=content, finish_reason="length")

    @classmethod
    def empty(cls) -> Reply:
        return cls(content="")


Responder = Callable[[dict[str, Any]], "str | Reply"]


def _error_body(message: str, code: str) -> str:
    return json.dumps({"error": {"message": message, "type": code, "code": code, "param": None}})


def _count_tokens(text: str) -> int:
    # Whitespace words are a stable, cheap stand-in for a tokenizer.
    return len(text.split())


def _default_responder(request: dict[str, Any]) -> str:
    return "ok"


class MockOpenAIServer:
    """OpenAI-compatible HTTP server on 127.0.0.1 in a background thread (see module doc).

    `latency_s` is added to every reply (the benchmark's fixed service time). `ignore_n`
    makes the server return a single choice whatever `n` says, as some servers do.
    """

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        models: Sequence[str] = ("mock-model",),
        latency_s: float = 0.0,
        ignore_n: bool = False,
        port: int = 0,
    ) -> None:
        self.responder = responder or _default_responder
        self.models = tuple(models)
        self.latency_s = latency_s
        self.ignore_n = ignore_n
        self.requests: list[dict[str, Any]] = []
        self.in_flight = 0
        self.max_in_flight = 0  # most chat requests being answered at once
        self.headers: list[dict[str, str]] = []
        self._port = port
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> MockOpenAIServer:
        self._thread = threading.Thread(target=self._serve, name="mock-openai", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._startup_error is not None:
            raise self._startup_error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._start())
        except BaseException as exc:  # surfaced to __enter__
            self._startup_error = exc
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._loop.close()

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._list_models)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self._port, backlog=1024)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _list_models(self, request: web.Request) -> web.Response:
        data = [{"id": m, "object": "model", "owned_by": "mock"} for m in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
        if body.get("model") not in self.models:
            message = f"The model `{body.get('model')}` does not exist."
            return web.Response(
                status=404,
                text=_error_body(message, "model_not_found"),
                content_type="application/json",
            )
        try:
            reply = self.responder(body)
        except Exception as exc:  # a broken script must show up as a server fault, not a hang
            reply = Reply(status=500, raw_body=_error_body(f"responder failed: {exc}", "mock"))
        if isinstance(reply, str):
            reply = Reply(content=reply)
        delay = self.latency_s + reply.delay_s
        self.in_flight += 1  # only touched on the server's loop: no lock needed
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if delay:
                await asyncio.sleep(delay)
        finally:
            self.in_flight -= 1
        if reply.raw_body is not None:
            return web.Response(
                status=reply.status,
                text=reply.raw_body,
                headers=reply.headers,
                content_type="application/json",
            )
        return web.Response(
            status=reply.status,
            text=json.dumps(self._completion(body, reply)),
            headers=reply.headers,
            content_type="application/json",
        )

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        n = 1 if self.ignore_n else int(body.get("n") or 1)
        texts = reply.content if isinstance(reply.content, list) else [reply.content] * n
        texts = texts[:n]
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": text},
                "finish_reason": reply.finish_reason,
            }
            for i, text in enumerate(texts)
        ]
        completion_tokens = sum(_count_tokens(t) for t in texts)
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": choices,
            "usage": {
                "prompt_tokens": _count_tokens(prompt),
                "completion_tokens": completion_tokens,
                "total_tokens": _count_tokens(prompt) + completion_tokens,
            },
        }


def _bench_responder(request: dict[str, Any]) -> str:
    return '{"answer": 42, "steps": ["6 * 7 = 42"]}'


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve a mock OpenAI endpoint until killed.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added to each reply")
    parser.add_argument("--model", default="mock-model")
    args = parser.parse_args(argv)
    server = MockOpenAIServer(
        _bench_responder, models=(args.model,), latency_s=args.latency, port=args.port
    )
    with server:
        print(f"PORT {server.port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    sys.exit(main())
