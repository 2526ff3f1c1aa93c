"""`mathsynth train sft|dpo` and `mathsynth eval` (wiring only: the work is in training/, the
Prefect flows in flows/train.py). Each command checks the `train` extra first, then runs its
flow, so the UI (PREFECT_API_URL) shows the run, its loss curve and its metrics."""

from __future__ import annotations

import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from mathsynth.training import check_installed

train_app = typer.Typer()
console = Console()
err_console = Console(stderr=True)

Data = Annotated[Path, typer.Option(help="A build's output directory (its sft / dpo shards).")]
Model = Annotated[str, typer.Option(help="Model to start from: a local directory or Hub id.")]
Output = Annotated[Path, typer.Option(help="Directory for the trained model and checkpoints.")]
MaxSteps = Annotated[int | None, typer.Option(min=1, help="Stop after N optimiser steps.")]
Lora = Annotated[bool | None, typer.Option("--lora/--no-lora", help="Train a LoRA adapter.")]
ConfigFile = Annotated[Path | None, typer.Option("--config", help="YAML config (train: ...).")]
Overwrite = Annotated[bool, typer.Option(help="Replace another run's checkpoints in --output.")]


class DPOLoss(StrEnum):
    sigmoid = "sigmoid"
    rise = "rise"


class Backend(StrEnum):
    auto = "auto"
    vllm = "vllm"
    transformers = "transformers"


@train_app.callback()
def _group() -> None:
    """Fine-tune a model on a build's shards with TRL (needs the `train` extra)."""


def _quiet_prefect() -> None:
    # As for `build`: the command prints its own summary; Prefect's per-run console lines
    # (and a failed run's traceback, which `main` reports as one line) still reach the API.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _settings(config: Path | None, **overrides: Any) -> dict[str, Any]:
    from mathsynth.config import load_config

    loaded = load_config(config, **{f"train.{k}": v for k, v in overrides.items()})
    return loaded.train.model_dump(mode="json")


def _train(
    stage: str, data: Path, model: str, output: Path, settings: dict[str, Any], overwrite: bool
) -> None:
    from mathsynth.flows.train import check_train_inputs, train_flow

    check_train_inputs(stage, str(data), model, str(output), settings, overwrite)
    result = train_flow(stage, str(data), model, str(output), settings, overwrite)
    first, last = result["first_loss"], result["last_loss"]
    logged = first is not None and last is not None
    losses = f"loss {first:.4f} → {last:.4f} (first → last logged step)" if logged else "no loss"
    if result["already_done"]:
        head = f"{stage}: already trained ({result['steps']} steps on {result['rows']} rows)"
        tail = "nothing to do (--overwrite trains it again, a larger --max-steps continues it)"
        console.print(f"{head}; {losses}; {tail}", highlight=False, soft_wrap=True)
        return
    resumed = f", resumed from {result['resumed_from']}" if result["resumed_from"] else ""
    console.print(
        f"{stage}: {result['steps']} steps on {result['rows']} rows in {result['seconds']} s"
        f"{resumed}; {losses}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"model saved to {output} (run record {output}/mathsynth_train.json, loss curve "
        f"{output}/loss_curve.png)",
        highlight=False,
        soft_wrap=True,
    )


@train_app.command("sft")
def sft(
    data: Data,
    model: Model,
    output: Output,
    max_steps: MaxSteps = None,
    lora: Lora = None,
    config: ConfigFile = None,
    overwrite: Overwrite = False,
) -> None:
    """Supervised fine-tuning (TRL SFTTrainer) on the sft rows' `messages`."""
    check_installed("mathsynth train")
    settings = _settings(config, **{"sft.max_steps": max_steps, "lora.enabled": lora})
    _quiet_prefect()
    _train("sft", data, model, output, settings, overwrite)


@train_app.command("dpo")
def dpo(
    data: Data,
    model: Model,
    output: Output,
    max_steps: MaxSteps = None,
    lora: Lora = None,
    loss: Annotated[
        DPOLoss | None,
        typer.Option(help="sigmoid (TRL's DPO) or rise (edit-span tokens weighted)."),
    ] = None,
    config: ConfigFile = None,
    overwrite: Overwrite = False,
) -> None:
    """Preference tuning (TRL DPOTrainer) on the dpo pairs; `--loss rise` for RISE."""
    check_installed("mathsynth train")
    overrides = {
        "dpo.max_steps": max_steps,
        "lora.enabled": lora,
        "dpo.loss": loss.value if loss else None,
    }
    settings = _settings(config, **overrides)
    _quiet_prefect()
    _train("dpo", data, model, output, settings, overwrite)


def eval_command(
    model: Annotated[str, typer.Option(help="Model to evaluate: a local directory or Hub id.")],
    benchmark: Annotated[
        str, typer.Option(help="GSM8K/MATH-style JSONL, Parquet, save_to_disk dir or Hub id.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(help="Per-item results JSONL (default <model>/eval/<benchmark>.jsonl)."),
    ] = None,
    split: Annotated[str | None, typer.Option(help="Split of a Hub / saved dataset.")] = None,
    max_items: Annotated[int | None, typer.Option(min=1, help="First N items only.")] = None,
    backend: Annotated[
        Backend | None, typer.Option(help="auto: vLLM if installed and a GPU is present.")
    ] = None,
    max_new_tokens: Annotated[int | None, typer.Option(min=1, help="Tokens per answer.")] = None,
    config: ConfigFile = None,
) -> None:
    """Answer a benchmark, grade with the answer checker, print accuracy with a 95% CI."""
    check_installed("mathsynth eval")
    overrides = {
        "eval.split": split,
        "eval.backend": backend.value if backend else None,
        "eval.max_new_tokens": max_new_tokens,
    }
    settings = _settings(config, **overrides)
    _quiet_prefect()
    from mathsynth.flows.train import check_eval_inputs, eval_flow

    check_eval_inputs(model, benchmark, settings, str(out) if out else None)
    summary = eval_flow(model, benchmark, settings, str(out) if out else None, max_items)
    console.print(
        f"accuracy {summary['accuracy']:.4f} ({summary['correct']}/{summary['n']}), "
        f"95% CI [{summary['ci_low']:.4f}, {summary['ci_high']:.4f}]  "
        f"model {model} on {benchmark}",
        highlight=False,
        soft_wrap=True,
    )
    others = ", ".join(f"{k} {v}" for k, v in sorted(summary["verdicts"].items()))
    console.print(
        f"verdicts: {others}; backend {summary['backend']}, {summary['seconds']} s; "
        f"results: {summary['results']}",
        highlight=False,
        soft_wrap=True,
    )
    if summary["skipped_rows"]:
        err_console.print(
            f"[yellow]warning:[/] {summary['skipped_rows']} benchmark row(s) are not items "
            "(no '####' / \\boxed{} answer, missing field) and were skipped",
            highlight=False,
            soft_wrap=True,
        )
