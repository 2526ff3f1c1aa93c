"""Prefect flows for fine-tuning and evaluation (wiring only; the work is `mathsynth.training`).

- `train_flow`: one SFT or DPO run; artifacts `train-<stage>-loss-curve` (an image of the
  training loss) and `train-<stage>-metrics` (the final metrics table);
- `eval_flow`: one model on one benchmark; artifact `eval-summary` (accuracy with its 95% CI);
- `build_train_eval`: the loop as one deployment (prefect.yaml): build the dataset, SFT the
  base model on it, DPO the SFT model, then evaluate the base and every trained model on
  the same benchmark; artifact `loop-comparison` puts them side by side.

Settings travel as the JSON of the `train:` config section, so every flow runs from a
deployment with plain parameters. The flows import the `train` extra only once running.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_image_artifact, create_table_artifact

from mathsynth.errors import ConfigError
from mathsynth.train_settings import TrainSettings
from mathsynth.training import check_installed


def check_train_inputs(
    stage: str, data: str, model: str, output: str, settings: dict[str, Any], overwrite: bool
) -> None:
    """What can be refused before a flow run starts (the flow checks again): an unknown
    stage, a dataset without the stage's shards, an output directory that may not receive
    the run, a model directory that does not exist. Failure modes: ConfigError,
    InputFileError, OutputDirError, ModelError."""
    from mathsynth.training import data as tables
    from mathsynth.training.models import check_model_name
    from mathsynth.training.runner import check_output

    fingerprint = _stage_module(stage).fingerprint
    tables.shard_files(Path(data), stage)
    check_model_name(model)
    config = TrainSettings.model_validate(settings)
    check_output(Path(output), fingerprint(Path(data), model, config), overwrite)


def _stage_module(stage: str) -> Any:
    if stage == "sft":
        from mathsynth.training import sft

        return sft
    if stage == "dpo":
        from mathsynth.training import dpo

        return dpo
    raise ConfigError(f"unknown training stage {stage!r} (sft, dpo)")


@flow(name="mathsynth-train", flow_run_name="{stage}")
def train_flow(
    stage: str,
    data: str,
    model: str,
    output: str,
    settings: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Fine-tune `model` on the dataset `data` (`stage` "sft" or "dpo") into `output`."""
    check_installed("mathsynth train")
    config = TrainSettings.model_validate(settings or {})
    module = _stage_module(stage)
    run = module.run_sft if stage == "sft" else module.run_dpo
    result = run(Path(data), model, Path(output), config, overwrite=overwrite)
    _publish_training(result)
    return result.to_dict()


def _publish_training(result: Any) -> None:
    from mathsynth.training.runner import CURVE_FILE

    png = (Path(result.output) / CURVE_FILE).read_bytes()
    # The UI shows an image artifact from a URL; a data URL carries the PNG itself, so the
    # curve shows without any file server.
    create_image_artifact(
        image_url="data:image/png;base64," + base64.b64encode(png).decode(),
        key=f"train-{result.stage}-loss-curve",
        description=f"{result.stage} training loss of {result.model} ({result.output})",
    )
    rows = [
        {"metric": "steps", "value": result.steps},
        {"metric": "rows", "value": result.rows},
        {"metric": "first loss", "value": _round(result.first_loss)},
        {"metric": "last loss", "value": _round(result.last_loss)},
        {"metric": "seconds", "value": result.seconds},
        {"metric": "precision", "value": result.precision},
        {"metric": "lora", "value": result.lora},
        *({"metric": k, "value": _round(v)} for k, v in sorted(result.metrics.items())),
    ]
    create_table_artifact(
        key=f"train-{result.stage}-metrics",
        table=rows,
        description=f"{result.stage} of {result.model} into {result.output}",
    )


def check_eval_inputs(
    model: str, benchmark: str, settings: dict[str, Any], out: str | None
) -> None:
    """Refuse an unreadable or empty benchmark and an unwritable results path before the
    flow starts (the flow checks again), and a model directory that does not exist.
    Failure modes: InputFileError, OutputDirError, ModelError."""
    from mathsynth.storage.output_dir import check_writable
    from mathsynth.training.benchmark import read_benchmark
    from mathsynth.training.evaluate import default_results_path
    from mathsynth.training.models import check_model_name

    check_model_name(model)
    config = TrainSettings.model_validate(settings)
    bench = read_benchmark(benchmark, config.eval.split, max_items=1)
    results = Path(out) if out else default_results_path(model, bench.name)
    check_writable(results.parent)


@flow(name="mathsynth-eval")
def eval_flow(
    model: str,
    benchmark: str,
    settings: dict[str, Any] | None = None,
    out: str | None = None,
    max_items: int | None = None,
) -> dict[str, Any]:
    """Answer `benchmark` with `model`, grade, score; per-item results written to `out`."""
    check_installed("mathsynth eval")
    from mathsynth.training.evaluate import run_eval

    config = TrainSettings.model_validate(settings or {})
    summary = run_eval(
        model,
        benchmark,
        config.eval,
        out=Path(out) if out else None,
        max_items=max_items,
        seed=config.seed,
    ).to_dict()
    create_table_artifact(
        key="eval-summary",
        table=[_summary_row(summary)],
        description=f"{model} on {benchmark}: accuracy with a 95% Wilson interval",
    )
    return summary


def _summary_row(summary: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": summary["model"],
        "benchmark": summary["benchmark"],
        "n": summary["n"],
        "correct": summary["correct"],
        "accuracy": round(summary["accuracy"], 4),
        "ci95 low": round(summary["ci_low"], 4),
        "ci95 high": round(summary["ci_high"], 4),
        "no answer": summary["verdicts"].get("no_answer", 0),
        "results": summary["results"],
    }


@flow(name="mathsynth-build-train-eval")
def build_train_eval(
    base_model: str,
    benchmark: str,
    output: str,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    stages: list[str] | None = None,
    max_items: int | None = None,
) -> dict[str, Any]:
    """Build (or resume) the dataset, train `stages` (default sft then dpo, each starting
    from the previous one's model) into `output/<stage>`, and evaluate the base model and
    each trained model on `benchmark`. `config_path` / `overrides` are the build's (as for
    the scheduled build); its `train:` section holds the hyperparameters."""
    from mathsynth.config import load_config
    from mathsynth.flows.build import build_flow

    config = load_config(config_path, **(overrides or {}))
    check_installed("mathsynth train")
    build = build_flow(config=config, overwrite=False)
    settings = config.train.model_dump(mode="json")
    models = [("base", base_model)]
    current = base_model
    trained = {}
    for stage in stages or ["sft", "dpo"]:
        target = str(Path(output) / stage)
        trained[stage] = train_flow(stage, str(config.out_dir), current, target, settings)
        current = target
        models.append((stage, target))
    evaluations = []
    for label, model in models:
        out = str(Path(output) / "eval" / f"{label}.jsonl")
        evaluations.append(
            {"label": label, **eval_flow(model, benchmark, settings, out, max_items)}
        )
    create_table_artifact(
        key="loop-comparison",
        table=[{"stage": e["label"], **_summary_row(e)} for e in evaluations],
        description=f"base vs fine-tuned on {benchmark}",
    )
    return {"build": build, "train": trained, "eval": evaluations}


def _round(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value
