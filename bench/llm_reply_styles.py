"""LLM-made rows when the model answers like the models users run, side by side in one run.

The issue's measurement: the project's scripted model (tests/llm_scripts.py behind
tests/llm_mock_server.py, through the real openai client) answers an LLM build on the bundled
seeds (`--max-seeds 3 --variants 2`, every generator, the default MuggleMath / MathScale
counts), once per reply style:

- plain                   the answer only
- think                   a <think> block with a draft holding other numbers, then the answer
- think_open              the same with the block opened by the chat template ("...</think>")
- reasoning_content       the draft in the message's `reasoning_content` field
- think_unstripped        think blocks under a tag name the client is not told about: what
                          the parsers saw before this layer knew reasoning models (the control)
- batch                   plain replies through the Batch API (/v1/files + /v1/batches)
- json noise, structured  30 % of JSON replies malformed unless the request has a schema
- json noise, no schema   the same with llm.structured_output: off

It prints the LLM-made rows per kind for each style with the ratio to plain, and the
malformed-reply rate of the JSON prompts (augment, concepts, score) with and without
structured outputs. The builds run through the executor directly (Prefect adds nothing to
what is measured here).

Run: .venv/bin/python -m bench.llm_reply_styles [--max-seeds 3] [--variants 2] [--noise 0.3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from dataset_checks import read_table  # noqa: E402
from llm_mock_server import MockOpenAIServer  # noqa: E402
from llm_scripts import ScriptedLLM  # noqa: E402

from mathsynth.config import load_config  # noqa: E402
from mathsynth.executor.local import (  # noqa: E402
    build_session,
    finish_build,
    prepare_build,
    run_batch,
)

MODEL = "mock"
KINDS = (
    "sft.mugglemath",
    "sft.mathscale",
    "dpo.llm_self_edit",
    "dpo.sampled_solution",
    "formal.formalize_llm",
)
JSON_KINDS = ("augment", "concepts", "score")
JSON_FAILURES = ("parse_malformed_json", "parse_no_json", "parse_bad_fields", "parse_no_score")


def styles(noise: float) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    return {
        "plain": ({}, {}),
        "think": ({"style": "think"}, {}),
        "think_open": ({"style": "think_open"}, {}),
        "reasoning_content": ({"style": "reasoning_content"}, {}),
        "think_unstripped": ({"style": "think"}, {"llm.think_tags": ["reflection"]}),
        "batch": ({}, {"llm.backend": "batch", "llm.batch_poll_s": 0.05}),
        "json noise, structured": ({"json_noise": noise}, {}),
        "json noise, no schema": ({"json_noise": noise}, {"llm.structured_output": "off"}),
    }


def build(out: Path, base_url: str, args: argparse.Namespace, **overrides: Any) -> dict[str, Any]:
    config = load_config(
        out=out,
        max_seeds=args.max_seeds,
        variants=args.variants,
        generators="infinitymath,mugglemath,mathscale,rise,formalize",
        **{"llm.base_url": base_url, "llm.model": MODEL, "llm.timeout_s": 60.0},
        **overrides,
    )
    start = time.perf_counter()
    with build_session(config, "bench") as ctx:
        batches, done = prepare_build(ctx, overwrite=False)
        with ThreadPoolExecutor(max_workers=config.max_workers) as pool:
            summaries = list(pool.map(lambda b: run_batch(ctx, b, done), batches))
        return finish_build(ctx, summaries, time.perf_counter() - start)


def llm_rows(out: Path) -> Counter[str]:
    counts: Counter[str] = Counter()
    for row in read_table(out, "sft"):
        counts[f"sft.{row['generator']}"] += 1
    for row in read_table(out, "dpo"):
        counts[f"dpo.{row['error_type']}"] += 1
    for row in read_table(out, "formal"):
        counts[f"formal.{json.loads(row['provenance']).get('generator')}"] += 1
    return Counter({k: counts[k] for k in KINDS})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seeds", type=int, default=3)
    parser.add_argument("--variants", type=int, default=2)
    parser.add_argument("--noise", type=float, default=0.3, help="malformed JSON share")
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="mathsynth-styles-") as tmp:
        for name, (script_kw, overrides) in styles(args.noise).items():
            script = ScriptedLLM(**script_kw)
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            with MockOpenAIServer(script, models=(MODEL,), check_schemas=True) as srv:
                start = time.perf_counter()
                report = build(out, srv.base_url, args, **overrides)
                seconds = time.perf_counter() - start
            rejected = Counter(r["reason"] for r in read_table(out, "rejected"))
            asked = sum(script.kinds[k] for k in JSON_KINDS)
            failed = sum(rejected[r] for r in JSON_FAILURES)
            results[name] = {
                "rows": llm_rows(out),
                "seconds": seconds,
                "requests": report["llm"].get("requests", 0),
                "retries": report["llm"].get("retries", 0),
                "batches": report["llm"].get("batches_submitted", 0),
                "json": (failed, asked),
                "reasons": rejected,
            }
            done = results[name]
            print(
                f"  {name}: {seconds:.1f} s, {done['requests']} requests "
                f"({done['retries']} retries)",
                flush=True,
            )

    plain = results["plain"]["rows"]
    print(
        f"\nLLM-made rows, bundled seeds --max-seeds {args.max_seeds} --variants "
        f"{args.variants}, every generator (ratio to plain)"
    )
    header = f"{'style':<24}" + "".join(f"{k:>24}" for k in KINDS)
    print(header)
    for name, result in results.items():
        cells = []
        for kind in KINDS:
            value = result["rows"][kind]
            ratio = value / plain[kind] if plain[kind] else float("nan")
            cells.append(f"{value:>14,} ({ratio:5.3f})")
        print(f"{name:<24}" + "".join(f"{c:>24}" for c in cells))
    print("\nmalformed JSON replies (rejected with a JSON parse reason / JSON prompts asked)")
    for name in ("json noise, no schema", "json noise, structured", "plain"):
        failed, asked = results[name]["json"]
        print(f"  {name:<24} {failed:>5} / {asked:<5} = {failed / max(asked, 1):6.1%}")
    unstripped = results["think_unstripped"]["reasons"]
    print(
        f"\nthink_unstripped rejections: multi_line {unstripped['multi_line']}, "
        f"no_sampled_contrast {unstripped['no_sampled_contrast']} "
        f"(plain: {results['plain']['reasons']['no_sampled_contrast']})"
    )
    batch = results["batch"]
    print(f"batch: {batch['batches']} batches for {batch['requests']} requests")


if __name__ == "__main__":
    main()
