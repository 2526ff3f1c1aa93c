"""LLM client throughput against a mock endpoint with a fixed 100 ms service time.

Ideal throughput at concurrency C is C / 0.1 s. Every client runs in this process against the
same mock server, which runs in its own process so the client's CPU cost is what limits it.
Printed side by side, in one run:

- sequential: one request at a time (AsyncOpenAI, aiohttp transport)
- AsyncOpenAI + semaphore, the SDK's default httpx transport, pydantic-parsed replies
- AsyncOpenAI + semaphore, the SDK's aiohttp transport (`DefaultAioHttpClient`)
- LLMClient.complete_many end to end: request cache (SQLite) + parse each reply's JSON +
  write the parsed rows to a Parquet file

Beside throughput it prints the client process's CPU time per request, which stays comparable
when other work shares the cores (then wall-clock throughput understates every client).

Run: .venv/bin/python bench/llm_throughput.py [--requests 3000] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from openai import AsyncOpenAI, DefaultAioHttpClient

from mathsynth.config import LLMSettings
from mathsynth.generators.llm import ChatRequest, LLMClient, LLMRequestError, ReplyParseError
from mathsynth.generators.llm.parsing import extract_json_object

LATENCY_S = 0.1
MODEL = "mock-model"
SERVER = Path(__file__).resolve().parent.parent / "tests" / "llm_mock_server.py"


def _messages(i: int, tag: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"{tag} problem {i}: reply with JSON"}]


async def _sdk_loop(base_url: str, n: int, concurrency: int, aiohttp: bool, tag: str) -> None:
    http_client = DefaultAioHttpClient() if aiohttp else None
    client = AsyncOpenAI(base_url=base_url, api_key="bench", max_retries=0, http_client=http_client)
    semaphore = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with semaphore:
            reply = await client.chat.completions.create(model=MODEL, messages=_messages(i, tag))
            assert reply.choices[0].message.content

    await asyncio.gather(*(one(i) for i in range(n)))
    await client.close()


def _llmclient_end_to_end(base_url: str, n: int, concurrency: int, workdir: Path) -> None:
    settings = LLMSettings(base_url=base_url, model=MODEL, concurrency=concurrency)
    with LLMClient(settings, None, workdir / "llm_cache.sqlite") as client:
        requests = [ChatRequest(messages=_messages(i, "e2e")) for i in range(n)]
        rows = []
        for i, result in enumerate(client.complete_many(requests)):
            if isinstance(result, LLMRequestError):
                raise SystemExit(f"request {i} failed: {result}")
            try:
                parsed = extract_json_object(result[0].text, ("answer", "steps"))
            except ReplyParseError as exc:
                raise SystemExit(f"reply {i} did not parse: {exc}") from None
            rows.append({"id": i, "answer": str(parsed["answer"]), "steps": parsed["steps"]})
        pq.write_table(pa.Table.from_pylist(rows), workdir / "part-00000.parquet")
        assert client.stats["requests"] == n, client.stats


def _timed(run: Callable[[], None | Awaitable[None]]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): CPU per request stays comparable when
    other work shares the cores, wall throughput does not."""
    start, cpu = time.perf_counter(), time.process_time()
    outcome = run()
    if outcome is not None:
        asyncio.run(outcome)  # type: ignore[arg-type]
    return time.perf_counter() - start, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--sequential", type=int, default=40, help="requests for the slow loop")
    args = parser.parse_args()
    n, c = args.requests, args.concurrency
    ideal = c / LATENCY_S

    server = subprocess.Popen(
        [sys.executable, str(SERVER), "--latency", str(LATENCY_S), "--model", MODEL],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline().split()[1])
        base_url = f"http://127.0.0.1:{port}/v1"
        # Warm up the server process (imports, first connections) before measuring anything.
        asyncio.run(_sdk_loop(base_url, 200, c, True, "warmup"))

        with tempfile.TemporaryDirectory() as tmp:
            cases: list[tuple[str, int, Callable[[], None | Awaitable[None]]]] = [
                (
                    "sequential loop (AsyncOpenAI, aiohttp)",
                    args.sequential,
                    lambda: _sdk_loop(base_url, args.sequential, 1, True, "seq"),
                ),
                (
                    f"AsyncOpenAI + semaphore({c}), httpx (SDK default)",
                    n,
                    lambda: _sdk_loop(base_url, n, c, False, "httpx"),
                ),
                (
                    f"AsyncOpenAI + semaphore({c}), aiohttp transport",
                    n,
                    lambda: _sdk_loop(base_url, n, c, True, "aiohttp"),
                ),
                (
                    f"LLMClient.complete_many({c}) + cache + parse + Parquet",
                    n,
                    lambda: _llmclient_end_to_end(base_url, n, c, Path(tmp)),
                ),
            ]
            print(f"mock latency {LATENCY_S * 1000:.0f} ms, concurrency {c}, ideal {ideal:.0f}/s")
            print(f"{'client':56} {'requests':>8} {'req/s':>7} {'% ideal':>7} {'CPU ms/req':>10}")
            for label, count, run in cases:
                seconds, cpu = _timed(run)
                rate = count / seconds
                print(
                    f"{label:56} {count:8d} {rate:7.1f} {100 * rate / ideal:6.1f}%"
                    f" {1000 * cpu / count:10.2f}"
                )
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
