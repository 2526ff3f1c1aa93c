"""A whole LLM build against the scripted mock endpoint: does the build keep it busy?

    .venv/bin/python -m bench.llm_build [--max-seeds 200] [--concurrency 64] [--latency 0.1]

Every LLM generator (InfinityMATH decoupling, MuggleMath, MathScale, RISE self-edits and
sampled pairs, Lean statements from language) runs on ~200 GSM8K train seeds
(../shared/data/gsm8k/train.jsonl, read in place) through the real flow (`run_build`, a
Prefect server started with `--no-services`), against tests/llm_scripts.py's scripted model
served by tests/llm_mock_server.py in its own process with a fixed service time. Printed:

- requests/s over the whole build (planning included) against the ideal C / latency;
- mean and peak requests in flight at the server (time-weighted, sampled every 2 ms);
- where the batches' time went (waiting on the LLM, sandbox, answer checks, writing,
  the rest: generation, parsing, judging), from the batches' own clocks;
- beside it, in the same run and against the same server code and latency, the client
  alone (bench/llm_throughput.py's end-to-end case: cache + parse + Parquet).

Goal: >= 80% of the ideal over the whole build. `--latency 1.0` shows the same build where
the endpoint, not this process's CPU, is the bound; `--runner dask` runs the batches on a
local Dask cluster (`--workers` processes, the concurrency split between them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SEEDS = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
MODEL = "mock"
GENERATORS = "infinitymath,mugglemath,mathscale,rise,formalize"


def serve(latency: float, scripted: bool) -> None:
    """Child process: the mock server; stdin commands `reset` / `stats` (JSON on stdout)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from llm_mock_server import MockOpenAIServer, _bench_responder
    from llm_scripts import ScriptedLLM

    responder = ScriptedLLM() if scripted else _bench_responder
    # "mock-model" is what bench/llm_throughput.py asks for.
    server = MockOpenAIServer(responder, models=(MODEL, "mock-model"), latency_s=latency)
    state = {"area": 0.0, "start": time.perf_counter(), "peak": 0, "requests": 0, "cpu": 0.0}
    lock = threading.Lock()

    def sample() -> None:
        last = time.perf_counter()
        while True:
            time.sleep(0.002)
            now = time.perf_counter()
            current = server.in_flight
            with lock:
                state["area"] += current * (now - last)
                state["peak"] = max(state["peak"], current)
            last = now

    with server:
        threading.Thread(target=sample, daemon=True).start()
        print(f"PORT {server.port}", flush=True)
        for line in sys.stdin:
            command = line.strip()
            with lock:
                if command == "reset":
                    state.update(
                        area=0.0, start=time.perf_counter(), peak=0, cpu=time.process_time()
                    )
                    state["requests"] = len(server.requests)
                elif command == "stats":
                    wall = time.perf_counter() - state["start"]
                    kinds = dict(getattr(responder, "kinds", {}))
                    print(
                        json.dumps(
                            {
                                "requests": len(server.requests) - state["requests"],
                                "mean_in_flight": state["area"] / wall if wall else 0.0,
                                "peak_in_flight": state["peak"],
                                "cpu_s": time.process_time() - state["cpu"],
                                "kinds": kinds,
                            }
                        ),
                        flush=True,
                    )


class Server:
    """A `serve` child process and its base URL."""

    def __init__(self, latency: float, scripted: bool) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.llm_build", "--serve", "--latency", str(latency)]
            + (["--scripted"] if scripted else []),
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.base_url = f"http://127.0.0.1:{int(self.proc.stdout.readline().split()[1])}/v1"

    def command(self, name: str) -> dict[str, Any] | None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(name + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline()) if name == "stats" else None

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.terminate()
        self.proc.wait(10)


def client_alone(latency: float, concurrency: int, n: int) -> tuple[float, float]:
    """bench/llm_throughput.py's end-to-end LLMClient case: (requests/s, CPU ms/request)."""
    import asyncio

    from bench.llm_throughput import _llmclient_end_to_end, _sdk_loop

    server = Server(latency, scripted=False)
    try:
        asyncio.run(_sdk_loop(server.base_url, 200, concurrency, True, "warmup"))
        with tempfile.TemporaryDirectory() as tmp:
            start, cpu = time.perf_counter(), time.process_time()
            _llmclient_end_to_end(server.base_url, n, concurrency, Path(tmp))
            wall = time.perf_counter() - start
            return n / wall, 1000 * (time.process_time() - cpu) / n
    finally:
        server.close()


def whole_build(args: argparse.Namespace, api_url: str) -> dict[str, Any]:
    from mathsynth.config import load_config
    from mathsynth.executor.timing import time_split
    from mathsynth.flows.build import run_build
    from mathsynth.storage.catalog import Catalog

    processes = args.workers if args.runner == "dask" else 1
    server = Server(args.latency, scripted=True)
    out = Path(tempfile.mkdtemp(prefix="mathsynth-bench-llm-"))
    shutil.rmtree(out)
    try:
        config = load_config(
            seeds=str(args.seeds),
            max_seeds=args.max_seeds,
            out=out,
            generators=GENERATORS,
            variants=args.variants,
            mugglemath_variants=args.mugglemath_variants,
            mathscale_samples=args.mathscale_samples,
            batch_size=args.batch_size,
            **{
                "llm.base_url": server.base_url,
                "llm.model": MODEL,
                # split across processes, so the server never sees more than C in flight
                "llm.concurrency": max(1, args.concurrency // processes),
                "runner.batches_in_flight": args.batches_in_flight,
                "runner.kind": args.runner,
                "runner.workers": args.workers,
            },
        )
        server.command("reset")
        start, cpu = time.perf_counter(), time.process_time()
        report = run_build(config)
        wall = time.perf_counter() - start
        cpu = time.process_time() - cpu
        stats = server.command("stats")
        assert stats is not None
        split: dict[str, float] = {}
        for (raw,) in Catalog(out).query("SELECT stats FROM batches"):
            for part, seconds in time_split(json.loads(raw or "{}")).items():
                split[part] = split.get(part, 0.0) + seconds
        return {
            "report": report,
            "wall": wall,
            "cpu": cpu,
            "server": stats,
            "split": split,
            "config": config,
        }
    finally:
        server.close()
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=Path, default=DEFAULT_SEEDS)
    parser.add_argument("--max-seeds", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--variants", type=int, default=8)
    parser.add_argument("--mugglemath-variants", type=int, default=8)
    parser.add_argument("--mathscale-samples", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=200)
    parser.add_argument(
        "--batches-in-flight", type=int, default=None, help="default: the build's own default"
    )
    parser.add_argument("--runner", choices=("threads", "dask"), default="threads")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--client-requests", type=int, default=3000)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--scripted", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.latency, args.scripted)
        return
    if not args.seeds.exists():
        raise SystemExit(f"{args.seeds}: GSM8K train not found; pass --seeds PATH")

    from bench.build_scaling import start_server
    from mathsynth.executor.local import batches_in_flight

    ideal = args.concurrency / args.latency
    env = dict(
        os.environ,
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="WARNING",
    )
    os.environ.update(
        PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL="WARNING"
    )
    prefect_server, api_url = start_server(env)
    os.environ["PREFECT_API_URL"] = api_url
    try:
        alone, alone_cpu = client_alone(args.latency, args.concurrency, args.client_requests)
        result = whole_build(args, api_url)
    finally:
        from prefect.logging.handlers import APILogHandler

        APILogHandler().flush()  # the build's queued log lines, before their server goes
        os.killpg(prefect_server.pid, signal.SIGTERM)
        prefect_server.wait(timeout=30)

    report, server, split, wall = (
        result["report"],
        result["server"],
        result["split"],
        result["wall"],
    )
    rate = server["requests"] / wall
    totals = report["totals"]
    print(
        f"mock latency {args.latency * 1000:.0f} ms, concurrency {args.concurrency}, "
        f"ideal {ideal:.0f} req/s"
    )
    print(
        f"build: {args.max_seeds} GSM8K seeds, generators {GENERATORS}, variants "
        f"{args.variants}, mugglemath_variants {args.mugglemath_variants}, mathscale_samples "
        f"{args.mathscale_samples}, batch_size {args.batch_size}, batches in flight "
        f"{batches_in_flight(result['config'])}"
    )
    print(
        f"  {totals['sft']} sft, {totals['dpo']} dpo, {totals['formal']} formal, "
        f"{totals['rejected']} rejected in {wall:.1f} s ({report['batches']} batches; "
        f"planning {report.get('plan_seconds', 0):.1f} s)"
    )
    print(f"  requests by kind: {json.dumps(server['kinds'], sort_keys=True)}")
    print(
        f"whole build: {server['requests']} requests, {rate:.1f} req/s = "
        f"{100 * rate / ideal:.1f}% of ideal (goal >= 80%)"
    )
    print(
        f"  in flight at the server: mean {server['mean_in_flight']:.1f}, "
        f"peak {server['peak_in_flight']} (concurrency {args.concurrency})"
    )
    total = split.get("total", 0.0)
    parts = ["llm_wait", "sandbox", "answer_checks", "lean", "writing"]
    accounted = sum(split.get(p, 0.0) for p in parts)
    shown = [
        f"{p} {split.get(p, 0.0):.1f} s ({split.get(p, 0.0) / total:.0%})"
        for p in parts
        if split.get(p)
    ]
    other = max(0.0, total - accounted)
    print(
        f"  batch time {total:.1f} s over all batches (they overlap): "
        + ", ".join(shown)
        + f", generation/parsing/judging {other:.1f} s ({other / total:.0%})"
        if total
        else "  no batch time recorded"
    )
    print(
        f"client alone (LLMClient end to end, {args.client_requests} requests): "
        f"{alone:.1f} req/s = {100 * alone / ideal:.1f}% of ideal"
    )
    print(f"whole build / client alone: {rate / alone:.2f}")
    print(
        f"mock server (its own process): {1000 * server['cpu_s'] / server['requests']:.2f} ms "
        "CPU per request"
    )
    # Wall-clock rates understate everything when other work shares the cores; CPU time per
    # request of this process (one GIL: the client's loop and the batches' Python work) does
    # not, and bounds what a free core would reach.
    build_cpu = 1000 * result["cpu"] / server["requests"]
    print(
        f"CPU of this process per request: build {build_cpu:.2f} ms (all of its work), client "
        f"alone {alone_cpu:.2f} ms; one free core would allow {1000 / build_cpu:.0f} "
        f"({100_000 / build_cpu / ideal:.0f}% of ideal) vs {1000 / alone_cpu:.0f} req/s"
    )


if __name__ == "__main__":
    main()
