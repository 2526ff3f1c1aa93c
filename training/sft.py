"""`mathsynth train sft`: TRL's SFTTrainer on the `messages` of a build's sft rows.

The rows are conversations (user question, assistant solution ending "The answer is X."),
which SFTTrainer renders with the model's chat template; packing fills each `max_length`
block with several rows (best-fit, padding-free, sequences kept apart by their position ids).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mathsynth.train_settings import TrainSettings
from mathsynth.training.data import SFT_COLUMNS, load_table, sample_rows
from mathsynth.training.models import load_model, lora_config
from mathsynth.training.runner import TrainResult, run_fingerprint, start_run, train_and_save
from mathsynth.training.trl_args import common_args


def fingerprint(data: Path, model: str, settings: TrainSettings) -> dict[str, object]:
    """What makes two SFT runs the same run (`training.runner.run_fingerprint`)."""
    return run_fingerprint("sft", data, model, settings.sft, settings)


def run_sft(
    data: Path,
    model: str,
    output: Path,
    settings: TrainSettings,
    *,
    overwrite: bool = False,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Fine-tune `model` on the sft rows of the dataset `data`, into `output`; `callbacks`
    are transformers TrainerCallbacks (progress, timing).

    Failure modes: InputFileError (no dataset / no sft rows), OutputDirError (see
    `runner.check_output`), ModelError (model cannot be loaded), ConfigError (precision).
    """
    from trl import SFTConfig, SFTTrainer

    dataset = sample_rows(
        load_table(data, "sft", SFT_COLUMNS), settings.sft.max_rows, settings.seed
    )
    target = {"max_steps": settings.sft.max_steps, "epochs": settings.sft.epochs}
    start = start_run(output, fingerprint(data, model, settings), target, overwrite)
    if start.finished is not None:
        return start.finished
    loaded = load_model(model, settings.precision)
    args = SFTConfig(
        **common_args(settings, settings.sft, loaded.precision, output),
        packing=settings.sft.packing,
        assistant_only_loss=settings.sft.assistant_only_loss,
    )
    trainer = SFTTrainer(
        model=loaded.model,
        args=args,
        train_dataset=dataset,
        processing_class=loaded.tokenizer,
        peft_config=lora_config(settings.lora),
        callbacks=callbacks,
    )
    return train_and_save(
        trainer,
        loaded,
        start,
        stage="sft",
        model=model,
        data=data,
        rows=len(dataset),
    )
