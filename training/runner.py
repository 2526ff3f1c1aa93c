"""One TRL trainer run into an output directory: claim the directory, resume from its last
checkpoint, train, save a model that loads with `from_pretrained` (and with vLLM), and write
what the run measured.

The directory, after a run:

    DIR/config.json, model.safetensors, tokenizer files   the trained model (LoRA merged in)
    DIR/adapter/                                          the LoRA adapter alone (--lora)
    DIR/checkpoints/checkpoint-N/                         Trainer checkpoints (resume)
    DIR/mathsynth_train.json                              the run: what it trained on, losses
    DIR/loss_curve.png                                    training loss per logged step

Rerunning the same command resumes from the last checkpoint (a finished run finishes at
once). A directory holding another run (another stage, model, data or settings) is refused
unless `overwrite`, which discards that run's checkpoints and record first.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from mathsynth.errors import OutputDirError
from mathsynth.storage.output_dir import check_writable
from mathsynth.train_settings import TrainSettings
from mathsynth.training.models import LoadedModel

RUN_FILE = "mathsynth_train.json"
CURVE_FILE = "loss_curve.png"
CHECKPOINTS = "checkpoints"
ADAPTER = "adapter"


@dataclass
class TrainResult:
    """What a run measured; `losses` are (step, training loss) as the trainer logged them."""

    stage: str
    output: str
    model: str
    data: str
    rows: int
    steps: int
    losses: list[tuple[int, float]]
    seconds: float
    precision: str
    lora: bool
    target: dict[str, Any] = field(default_factory=dict)  # the run's max_steps / epochs
    resumed_from: str | None = None
    already_done: bool = False  # a rerun of a finished run: nothing was trained
    metrics: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainResult:
        fields = {k: v for k, v in data.items() if k not in ("first_loss", "last_loss")}
        fields["losses"] = [(int(s), float(v)) for s, v in fields.get("losses", [])]
        return cls(**fields)

    @property
    def first_loss(self) -> float | None:
        return self.losses[0][1] if self.losses else None

    @property
    def last_loss(self) -> float | None:
        return self.losses[-1][1] if self.losses else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "first_loss": self.first_loss, "last_loss": self.last_loss}


def run_fingerprint(
    stage: str, data: Path, model: str, stage_settings: BaseModel, settings: TrainSettings
) -> dict[str, object]:
    """What makes two runs of `stage` the same run (a rerun with it resumes the checkpoints).
    The length of the run is not part of it: a rerun with more steps continues the run."""
    return {
        "stage": stage,
        "model": model,
        "data": str(data.resolve()),
        "settings": stage_settings.model_dump(mode="json", exclude={"max_steps", "epochs"}),
        "lora": settings.lora.model_dump(mode="json"),
        "seed": settings.seed,
    }


def check_output(output: Path, fingerprint: dict[str, Any], overwrite: bool) -> bool:
    """Whether `output` may receive this run (read-only); True when it holds another run
    to replace (allowed by `overwrite`, or by that run having saved nothing yet).

    Failure modes: OutputDirError for a path that cannot be a writable directory, a non-empty
    directory that holds no mathsynth training run, or one that holds another run with a
    checkpoint or a result (without `overwrite`).
    """
    try:
        check_writable(output)
    except OutputDirError as exc:  # its message names build's flag
        raise OutputDirError(str(exc).replace("--out ", "--output ", 1)) from None
    record = output / RUN_FILE
    if not record.exists():
        # An empty checkpoints/ is what a run that failed while starting leaves behind.
        foreign = [
            p for p in (output.iterdir() if output.is_dir() else [])
            if not (p.name == CHECKPOINTS and not _has_checkpoint(output))
        ]  # fmt: skip
        if foreign:
            raise OutputDirError(
                f"--output {output}: not empty and holds no mathsynth training run; choose "
                "an empty or new directory"
            )
        return False
    try:
        saved = json.loads(record.read_text())
        previous, result = saved.get("fingerprint") or {}, saved.get("result")
    except (ValueError, AttributeError):
        previous, result = {}, None
    if previous == fingerprint:
        return False
    if not overwrite and (result is not None or _has_checkpoint(output)):
        differs = sorted(k for k in fingerprint if previous.get(k) != fingerprint[k])
        raise OutputDirError(
            f"--output {output}: holds another run (different {', '.join(differs)}); "
            "pass --overwrite to replace it or choose another directory"
        )
    return True


def _has_checkpoint(output: Path) -> bool:
    return any((output / CHECKPOINTS).glob("checkpoint-*"))


@dataclass
class RunStart:
    """What `start_run` found: a finished run to return as is, or a run to (re)start."""

    output: Path
    fingerprint: dict[str, Any]
    target: dict[str, Any]
    replacing: bool  # `output` holds another run that --overwrite replaces
    finished: TrainResult | None


def start_run(
    output: Path, fingerprint: dict[str, Any], target: dict[str, Any], overwrite: bool
) -> RunStart:
    """Decide what to do with `output`, writing nothing (see `check_output`): `finished` is
    the recorded result when it already holds this run, finished with the same `target`
    (max_steps / epochs), and its model, so a rerun has nothing to train. A longer target
    continues the run from its last checkpoint. The directory is claimed only by
    `train_and_save`, once model and trainer are built: a bad --model leaves nothing behind.
    """
    replacing = check_output(output, fingerprint, overwrite)
    record = output / RUN_FILE
    finished = None
    if not replacing and record.exists():
        previous = json.loads(record.read_text()).get("result")
        if previous and previous.get("target") == target and (output / "config.json").exists():
            finished = TrainResult.from_dict(previous)
            finished.already_done = True
    return RunStart(output, fingerprint, target, replacing, finished)


def _claim(start: RunStart) -> None:
    """Discard a replaced run's checkpoints and record this run's fingerprint."""
    if start.replacing:
        shutil.rmtree(start.output / CHECKPOINTS, ignore_errors=True)
        shutil.rmtree(start.output / ADAPTER, ignore_errors=True)
    start.output.mkdir(parents=True, exist_ok=True)
    record = {"fingerprint": start.fingerprint, "result": None}
    (start.output / RUN_FILE).write_text(json.dumps(record, indent=2))


def last_checkpoint(output: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = output / CHECKPOINTS
    return get_last_checkpoint(str(folder)) if folder.is_dir() else None


def train_and_save(
    trainer: Any,
    loaded: LoadedModel,
    start: RunStart,
    *,
    stage: str,
    model: str,
    data: Path,
    rows: int,
) -> TrainResult:
    """Claim `start.output`, train (resuming from its last checkpoint), save the model and
    tokenizer, write the run record and the loss curve. `trainer` is a TRL trainer built on
    `loaded.model` with `output_dir=<output>/checkpoints`; `rows` the dataset rows it trains
    on (before packing). A run stopped after its last checkpoint but before its record was
    written trains one step more when rerun (transformers resumes at max_steps that way)."""
    from peft import PeftModel

    output = start.output
    _claim(start)
    resume = last_checkpoint(output)
    started = time.perf_counter()
    outcome = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - started
    trained = trainer.model
    lora = isinstance(trained, PeftModel)
    if lora:
        trained.save_pretrained(str(output / ADAPTER))
        trained = trained.merge_and_unload()
    trained.save_pretrained(str(output))
    loaded.tokenizer.save_pretrained(str(output))
    losses = [
        (int(entry["step"]), float(entry["loss"]))
        for entry in trainer.state.log_history
        if "loss" in entry and "step" in entry
    ]
    result = TrainResult(
        stage=stage,
        output=str(output),
        model=model,
        data=str(data),
        rows=rows,
        steps=int(trainer.state.global_step),
        losses=losses,
        seconds=round(seconds, 2),
        precision=loaded.precision,
        lora=lora,
        target=start.target,
        resumed_from=resume,
        metrics={k: float(v) for k, v in outcome.metrics.items() if isinstance(v, int | float)},
    )
    record = output / RUN_FILE
    saved = json.loads(record.read_text())
    saved["result"] = result.to_dict()
    record.write_text(json.dumps(saved, indent=2))
    from mathsynth.training.curve import plot_losses

    (output / CURVE_FILE).write_bytes(plot_losses(losses, f"{stage} training loss ({model})"))
    return result
