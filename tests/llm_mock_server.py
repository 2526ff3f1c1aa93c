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

Reasoning models: `Reply(reasoning=...)` sends thinking in the message's `reasoning_content`
field (or `reasoning`, with `reasoning_field="reasoning"`) and reports its whitespace-word count
as `usage.completion_tokens_details.reasoning_tokens`, as vLLM's reasoning parsers and OpenAI
do; a `<think>` block written into `content` is just content.

Structured outputs: with `structured=True` (the default, like vLLM, SGLang and OpenAI) a
request with a JSON-schema `response_format` is answered by the responder; with
`check_schemas=True` its content (after a leading think block) must also validate against
that schema, or the server answers 500 saying why, so a script and a schema that disagree
fail loudly (off by default: tests of tolerant parsing send broken JSON on purpose). The
client's capability probe
(`client.PROBE_PROMPT`) is answered by the server itself and listed in `probes`, not in
`requests`. With `structured=False` every request carrying `response_format` gets a 400, as
servers without guided decoding answer.

Batch API: `/v1/files` (upload, `GET /v1/files/ID/content`) and `/v1/batches` (create,
retrieve, list). A batch's lines are answered by the same responder when the batch is created
(each line's body also lands in `requests`); its status reads `validating`, then `in_progress`
for `batch_polls` retrievals, then `completed` with an output file (200 lines) and an error
file (the others). `hold_batches` (a threading.Event) keeps batches `in_progress` until it is
set; `expire_batches_after=k` ends each batch `expired` with only its first k lines answered;
`fail_batches="why"` makes every batch fail validation. `uploads` and `batches` record what
arrived.

Run it as a script (`python tests/llm_mock_server.py --latency 0.1`) to serve from another
process: it prints `PORT <n>` once listening and answers every prompt with a small JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jsonschema
from aiohttp import web

from mathsynth.generators.llm.client import PROBE_PROMPT


@dataclass
class Reply:
    """One scripted reply. `content` may be a list to give each of `n` choices its own text."""

    content: str | list[str] = ""
    finish_reason: str = "stop"
    status: int = 200
    delay_s: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    raw_body: str | None = None  # sent verbatim instead of a chat completion when set
    # Thinking sent apart from the content (one text, or one per choice), in this field.
    reasoning: str | list[str] | None = None
    reasoning_field: str = "reasoning_content"

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


_LEADING_THINK = re.compile(r"^\s*(?:<think>.*?</think>|.*?</think>)\s*", re.DOTALL)


def _schema_problem(body: dict[str, Any], texts: list[str]) -> str | None:
    """Why a reply breaks the request's JSON-schema response_format (None when it does not)."""
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema")
    if fmt.get("type") != "json_schema" or not isinstance(schema, dict):
        return None
    for text in texts:
        answer = _LEADING_THINK.sub("", text, count=1) if "</think>" in text else text
        try:
            jsonschema.validate(json.loads(answer), schema)
        except (ValueError, jsonschema.ValidationError) as exc:
            return f"reply violates the response_format schema: {str(exc).splitlines()[0]}"
    return None


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
        structured: bool = True,
        check_schemas: bool = False,
        batch_polls: int = 2,
        hold_batches: threading.Event | None = None,
        expire_batches_after: int | None = None,
        fail_batches: str | None = None,
    ) -> None:
        self.responder = responder or _default_responder
        self.models = tuple(models)
        self.latency_s = latency_s
        self.ignore_n = ignore_n
        self.structured = structured
        self.check_schemas = check_schemas
        self.batch_polls = batch_polls
        self.hold_batches = hold_batches
        self.expire_batches_after = expire_batches_after
        self.fail_batches = fail_batches
        self.requests: list[dict[str, Any]] = []
        self.probes: list[dict[str, Any]] = []
        self.uploads: dict[str, bytes] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self._files: dict[str, bytes] = {}
        self._batch_state: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
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
        app.router.add_post("/v1/files", self._upload)
        app.router.add_get("/v1/files/{file_id}/content", self._file_content)
        app.router.add_post("/v1/batches", self._create_batch)
        app.router.add_get("/v1/batches", self._list_batches)
        app.router.add_get("/v1/batches/{batch_id}", self._retrieve_batch)
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
        if self._is_probe(body):
            with self._lock:
                self.probes.append(body)
            if not self.structured:
                return self._refuse_structured()
            return web.json_response(self._completion(body, Reply(content='{"ok": true}')))
        with self._lock:
            self.requests.append(body)
            self.headers.append(dict(request.headers))
        status, text, headers, delay = self._answer(body)
        self.in_flight += 1  # only touched on the server's loop: no lock needed
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if delay:
                await asyncio.sleep(delay)
        finally:
            self.in_flight -= 1
        return web.Response(
            status=status, text=text, headers=headers, content_type="application/json"
        )

    def _is_probe(self, body: dict[str, Any]) -> bool:
        messages = body.get("messages") or [{}]
        return messages[-1].get("content") == PROBE_PROMPT and "response_format" in body

    def _refuse_structured(self) -> web.Response:
        return web.Response(
            status=400,
            text=_error_body("response_format json_schema is not supported", "invalid_request"),
            content_type="application/json",
        )

    def _answer(self, body: dict[str, Any]) -> tuple[int, str, dict[str, str], float]:
        """(status, body text, headers, delay) of one chat request, online or in a batch."""
        if body.get("model") not in self.models:
            message = f"The model `{body.get('model')}` does not exist."
            return 404, _error_body(message, "model_not_found"), {}, 0.0
        if "response_format" in body and not self.structured:
            return 400, _error_body("response_format is not supported", "invalid_request"), {}, 0.0
        try:
            reply = self.responder(body)
        except Exception as exc:  # a broken script must show up as a server fault, not a hang
            reply = Reply(status=500, raw_body=_error_body(f"responder failed: {exc}", "mock"))
        if isinstance(reply, str):
            reply = Reply(content=reply)
        delay = self.latency_s + reply.delay_s
        if reply.raw_body is not None:
            return reply.status, reply.raw_body, reply.headers, delay
        completion = self._completion(body, reply)
        texts = [c["message"]["content"] for c in completion["choices"]]
        problem = None
        if self.check_schemas and reply.status == 200:
            problem = _schema_problem(body, texts)
        if problem is not None:
            return 500, _error_body(problem, "mock_schema"), {}, delay
        return reply.status, json.dumps(completion), reply.headers, delay

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        n = 1 if self.ignore_n else int(body.get("n") or 1)
        texts = reply.content if isinstance(reply.content, list) else [reply.content] * n
        texts = texts[:n]
        prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
        thinking = reply.reasoning
        thoughts = thinking if isinstance(thinking, list) else [thinking] * len(texts)
        choices = []
        for i, text in enumerate(texts):
            message: dict[str, Any] = {"role": "assistant", "content": text}
            if thoughts[i] is not None:
                message[reply.reasoning_field] = thoughts[i]
            choices.append({"index": i, "message": message, "finish_reason": reply.finish_reason})
        reasoning_tokens = sum(_count_tokens(t or "") for t in thoughts[: len(texts)])
        completion_tokens = sum(_count_tokens(t) for t in texts) + reasoning_tokens
        usage: dict[str, Any] = {
            "prompt_tokens": _count_tokens(prompt),
            "completion_tokens": completion_tokens,
            "total_tokens": _count_tokens(prompt) + completion_tokens,
        }
        if thinking is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning_tokens}
        return {
            "id": f"chatcmpl-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body["model"],
            "choices": choices,
            "usage": usage,
        }

    # -- the Batch API ------------------------------------------------------------------------

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    async def _upload(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        if form.get("purpose") != "batch" or not hasattr(upload, "file"):
            return web.Response(
                status=400,
                text=_error_body("expected purpose=batch and a file", "invalid_request"),
                content_type="application/json",
            )
        data = upload.file.read()  # type: ignore[union-attr]
        file_id = self._new_id("file")
        with self._lock:
            self.uploads[file_id] = data
            self._files[file_id] = data
        return web.json_response(
            {
                "id": file_id,
                "object": "file",
                "bytes": len(data),
                "created_at": int(time.time()),
                "filename": getattr(upload, "filename", "input.jsonl"),
                "purpose": "batch",
                "status": "processed",
            }
        )

    async def _file_content(self, request: web.Request) -> web.Response:
        data = self._files.get(request.match_info["file_id"])
        if data is None:
            return web.Response(
                status=404,
                text=_error_body("no such file", "not_found"),
                content_type="application/json",
            )
        return web.Response(body=data, content_type="application/octet-stream")

    async def _create_batch(self, request: web.Request) -> web.Response:
        params = await request.json()
        data = self._files.get(str(params.get("input_file_id")))
        if data is None:
            return web.Response(
                status=400,
                text=_error_body("unknown input_file_id", "invalid_request"),
                content_type="application/json",
            )
        batch_id = self._new_id("batch")
        lines = [json.loads(line) for line in data.decode().splitlines() if line.strip()]
        state: dict[str, Any] = {"polls": 0, "lines": lines}
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": params.get("endpoint"),
            "errors": None,
            "input_file_id": params.get("input_file_id"),
            "completion_window": params.get("completion_window"),
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(time.time()),
            "request_counts": {"total": len(lines), "completed": 0, "failed": 0},
            "metadata": params.get("metadata"),
        }
        if self.fail_batches is not None:
            batch["status"] = "failed"
            batch["errors"] = {
                "object": "list",
                "data": [{"code": "invalid_request", "message": self.fail_batches, "line": 1}],
            }
        else:
            answered = lines
            if self.expire_batches_after is not None:
                answered = lines[: self.expire_batches_after]
            state["results"] = [self._batch_line(line) for line in answered]
        with self._lock:
            self.batches[batch_id] = batch
            self._batch_state[batch_id] = state
        return web.json_response(batch)

    def _batch_line(self, line: dict[str, Any]) -> tuple[bool, str]:
        """(answered with 200, the output line) for one input line."""
        body = line["body"]
        with self._lock:
            self.requests.append(body)
        status, text, _, _ = self._answer(body)
        try:
            parsed: Any = json.loads(text)
        except ValueError:
            parsed = text  # a malformed body stays what it was: not a chat completion
        record = {
            "id": self._new_id("batch_req"),
            "custom_id": line["custom_id"],
            "response": {"status_code": status, "request_id": self._new_id("req"), "body": parsed},
            "error": None,
        }
        return status == 200, json.dumps(record)

    async def _retrieve_batch(self, request: web.Request) -> web.Response:
        batch_id = request.match_info["batch_id"]
        with self._lock:
            batch = self.batches.get(batch_id)
            if batch is None:
                return web.Response(
                    status=404,
                    text=_error_body(f"no batch {batch_id}", "not_found"),
                    content_type="application/json",
                )
            self._advance(batch, self._batch_state[batch_id])
            return web.json_response(batch)

    def _advance(self, batch: dict[str, Any], state: dict[str, Any]) -> None:
        if batch["status"] in ("completed", "failed", "expired", "cancelled"):
            return
        state["polls"] += 1
        held = self.hold_batches is not None and not self.hold_batches.is_set()
        if held or state["polls"] <= self.batch_polls:
            batch["status"] = "in_progress"
            return
        results = state["results"]
        good = [text for ok, text in results if ok]
        bad = [text for ok, text in results if not ok]
        for key, texts in (("output_file_id", good), ("error_file_id", bad)):
            if texts:
                file_id = self._new_id("file")
                self._files[file_id] = ("\n".join(texts) + "\n").encode()
                batch[key] = file_id
        expired = len(results) < len(state["lines"])
        batch["status"] = "expired" if expired else "completed"
        batch["request_counts"] = {
            "total": len(state["lines"]),
            "completed": len(good),
            "failed": len(bad),
        }

    async def _list_batches(self, request: web.Request) -> web.Response:
        with self._lock:
            data = list(reversed(self.batches.values()))
        limit = int(request.query.get("limit", 20))
        return web.json_response(
            {"object": "list", "data": data[:limit], "has_more": len(data) > limit}
        )


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
