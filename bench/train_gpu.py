"""SFT throughput on a GPU: `mathsynth train sft` on 10k rows of a default build, with packing
and without, side by side in one run.

For each variant: optimiser steps, tokens trained, tokens/s (between the first and the last
logged step, so neither the model's warm-up nor the final save counts), peak GPU memory
(torch.cuda.max_memory_allocated) and the last logged loss; then the packed/padded ratios.
Where no CUDA GPU exists it says so and exits 0 (nothing to measure); `--allow-cpu` runs it
anyway, to check the script itself with a tiny model (its numbers mean nothing).

    .venv/bin/python -m bench.train_gpu --model Qwen/Qwen2.5-0.5B-Instruct
        [--data data/default] [--rows 10000] [--max-steps N] [--batch-size 8]
        [--max-length 1024] [--lora]

Without --data, the default dataset is built into .bench/train-gpu/data first (~30 s).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import time
from pathlib import Path
from typing import Any

WORK = Path(".bench/train-gpu")


def _cannot_run() -> str | None:
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("trl") is None:
        return "the train extra is not installed (pip install 'mathsynth[train]')"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    return None


def _dataset(data: Path | None) -> Path:
    if data is not None:
        return data
    from mathsynth.config import load_config
    from mathsynth.flows.build import run_build

    out = WORK / "data"
    run_build(load_config(out=out))
    return out


class _Timer:
    """A TrainerCallback recording (time, trained tokens) at every logged step."""

    def __init__(self) -> None:
        from transformers import TrainerCallback

        timer = self

        class Callback(TrainerCallback):
            def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any):
                if logs and "num_tokens" in logs:
                    timer.points.append((time.perf_counter(), float(logs["num_tokens"])))

        self.points: list[tuple[float, float]] = []
        self.callback = Callback()

    def tokens_per_second(self) -> float | None:
        if len(self.points) < 2:
            return None
        (t0, n0), (t1, n1) = self.points[0], self.points[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


def _run(
    variant: str, packing: bool, data: Path, model: str, args: argparse.Namespace
) -> dict[str, Any]:
    import torch

    from mathsynth.train_settings import TrainSettings
    from mathsynth.training.sft import run_sft

    settings = TrainSettings.model_validate(
        {
            "sft": {
                "packing": packing,
                "max_rows": args.rows,
                "max_steps": args.max_steps,
                "batch_size": args.batch_size,
                "max_length": args.max_length,
            },
            "lora": {"enabled": args.lora},
            "logging_steps": args.logging_steps,
            "save_steps": 10**9,  # no checkpoint inside the measured window
        }
    )
    output = WORK / variant
    shutil.rmtree(output, ignore_errors=True)
    timer = _Timer()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    result = run_sft(data, model, output, settings, overwrite=True, callbacks=[timer.callback])
    peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    return {
        "variant": variant,
        "steps": result.steps,
        "rows": result.rows,
        "tokens": timer.points[-1][1] if timer.points else None,
        "tokens_per_s": timer.tokens_per_second(),
        "peak_gib": peak,
        "last_loss": result.last_loss,
        "precision": result.precision,
    }


def _fmt(value: Any, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="small causal LM: directory or Hub id")
    parser.add_argument("--data", type=Path, default=None, help="a build's output directory")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--max-steps", type=int, default=None, help="default: one epoch")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--logging-steps", type=int, default=10)
    parser.add_argument("--lora", action="store_true")
    parser.add_argument("--allow-cpu", action="store_true", help="check the script on a CPU")
    args = parser.parse_args(argv)
    reason = _cannot_run()
    if reason is not None and not (args.allow_cpu and "GPU" in reason):
        print(f"bench.train_gpu: {reason}; it measures SFT on a GPU, nothing measured here.")
        return 0
    data = _dataset(args.data)
    rows = [
        _run("packed", True, data, args.model, args),
        _run("padded", False, data, args.model, args),
    ]
    print(f"\nSFT of {args.model} on {rows[0]['rows']} rows of {data} ({rows[0]['precision']})")
    print(f"{'variant':8} {'steps':>6} {'tokens':>10} {'tokens/s':>10} {'peak GiB':>9} {'loss':>7}")
    for r in rows:
        print(
            f"{r['variant']:8} {r['steps']:>6} {_fmt(r['tokens'], '.0f'):>10} "
            f"{_fmt(r['tokens_per_s'], '.0f'):>10} {_fmt(r['peak_gib'], '.2f'):>9} "
            f"{_fmt(r['last_loss'], '.4f'):>7}"
        )
    packed, padded = rows
    if packed["tokens_per_s"] and padded["tokens_per_s"]:
        print(f"packed / padded tokens/s: {packed['tokens_per_s'] / padded['tokens_per_s']:.2f}x")
    if packed["peak_gib"] and padded["peak_gib"]:
        print(f"packed / padded peak memory: {packed['peak_gib'] / padded['peak_gib']:.2f}x")
    if reason is not None:
        print(f"note: {reason}; these CPU numbers only show that the script runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
