"""The Kimina Lean Server backend against a real HTTP stub on 127.0.0.1 that speaks the
server's `/verify` and `/health` shapes (project-numina/kimina-lean-server app/schemas.py)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mathsynth.config import LeanSettings
from mathsynth.verifiers.lean import HEADER, KiminaBackend, LeanItem, describe_lean_backend

Responder = Callable[[dict[str, Any]], tuple[int, Any]]


class _Stub:
    def __init__(self, responder: Responder) -> None:
        self.responder = responder
        self.requests: list[dict[str, Any]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                if self.path == "/health":
                    self._send(200, {"status": "ok"})
                else:
                    self._send(404, {"detail": "Not Found"})

            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                stub.requests.append({"path": self.path, "body": body})
                status, payload = stub.responder(body)
                self._send(status, payload)

            def _send(self, status: int, payload: Any) -> None:
                raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def stub() -> Iterator[Callable[[Responder], _Stub]]:
    stubs: list[_Stub] = []

    def start(responder: Responder) -> _Stub:
        stubs.append(_Stub(responder))
        return stubs[-1]

    yield start
    for s in stubs:
        s.close()


def _lean_like(body: dict[str, Any]) -> tuple[int, Any]:
    """Answers each snippet the way the server would for the marker it contains."""
    results = []
    for code in body["codes"]:
        proof = code["proof"]
        entry: dict[str, Any] = {"custom_id": code["custom_id"], "error": None}
        if "TIMEOUT" in proof:
            entry["error"] = "Lean REPL command timed out in 60 seconds"
        elif "BOOM" in proof:
            entry["error"] = "REPL crashed"
        elif "MISSING" in proof:
            continue
        else:
            messages = []
            if "BAD" in proof:
                messages.append(
                    {"severity": "error", "pos": {"line": 1, "column": 2}, "data": "oops"}
                )
            entry["response"] = {"env": 0, "messages": messages, "time": 0.01}
        results.append(entry)
    return 200, {"results": results}


def test_verify_request_shape_and_results(stub: Callable[[Responder], _Stub]) -> None:
    server = stub(_lean_like)
    items = [
        LeanItem("a", "theorem a : 1 = 1 := by rfl"),
        LeanItem("a", "theorem b : 1 = 2 := by BAD"),
        LeanItem("c", "theorem c : 1 = 1 := by sorry"),
        LeanItem("d", "TIMEOUT"),
        LeanItem("e", "BOOM"),
        LeanItem("f", "MISSING"),
    ]
    backend = KiminaBackend(server.url + "/", timeout_s=7, batch_size=4)
    results = backend.check(items)
    assert [r.status for r in results] == [
        "proved", "failed", "compiled", "failed", "unchecked", "unchecked",
    ]  # fmt: skip
    assert results[1].messages == ["error 1:2: oops"]
    assert results[4].messages == ["unchecked: kimina server error: REPL crashed"]
    assert "no result" in results[5].messages[0]
    # Two batches of at most 4; positions as custom ids, so duplicate item ids are fine.
    assert [len(r["body"]["codes"]) for r in server.requests] == [4, 2]
    first = server.requests[0]
    assert first["path"] == "/verify"
    assert first["body"]["timeout"] == 7
    assert [c["custom_id"] for c in first["body"]["codes"]] == ["0", "1", "2", "3"]
    assert first["body"]["codes"][0]["proof"] == HEADER + "\n\ntheorem a : 1 = 1 := by rfl"


def test_retries_on_503_then_succeeds(stub: Callable[[Responder], _Stub]) -> None:
    calls: list[int] = []

    def flaky(body: dict[str, Any]) -> tuple[int, Any]:
        calls.append(1)
        return (503, {"detail": "busy"}) if len(calls) == 1 else _lean_like(body)

    server = stub(flaky)
    (result,) = KiminaBackend(server.url, backoff_s=0.01).check([LeanItem("a", "ok")])
    assert result.status == "proved"
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ((500, {"detail": "internal"}), "answered HTTP 500"),
        ((200, b"<html>not json</html>"), "sent non-JSON"),
        ((200, {"unexpected": True}), "no 'results' list"),
    ],
)
def test_bad_server_replies_mark_rows_unchecked(
    stub: Callable[[Responder], _Stub], reply: tuple[int, Any], reason: str
) -> None:
    server = stub(lambda body: reply)
    results = KiminaBackend(server.url, retries=0).check([LeanItem("a", "x"), LeanItem("b", "y")])
    assert [r.status for r in results] == ["unchecked", "unchecked"]
    assert reason in results[0].messages[0]


def test_unreachable_server_marks_rows_unchecked() -> None:
    backend = KiminaBackend("http://127.0.0.1:9", retries=0)
    (result,) = backend.check([LeanItem("a", "x")])
    assert result.status == "unchecked"
    assert "unreachable" in result.messages[0]


def test_describe_probes_health(stub: Callable[[Responder], _Stub]) -> None:
    server = stub(_lean_like)
    name, ok, detail = describe_lean_backend(LeanSettings(server_url=server.url))
    assert (name, ok) == ("kimina", True)
    assert '"status": "ok"' in detail
    name, ok, detail = describe_lean_backend(LeanSettings(server_url="http://127.0.0.1:9"))
    assert (name, ok) == ("kimina", False)
    assert "unreachable" in detail
