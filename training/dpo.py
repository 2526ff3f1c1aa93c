"""`mathsynth train dpo`: TRL's DPOTrainer on a build's dpo pairs (conversational preference
format), with TRL's sigmoid loss or RISE's edit-span weighting (`training.rise`).

The reference model is the starting policy: TRL loads a frozen copy of it, or, with LoRA,
disables the adapter for the reference forwards (no second copy in memory).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mathsynth.train_settings import TrainSettings
from mathsynth.training.data import DPO_COLUMNS, RISE_COLUMNS, load_table, sample_rows
from mathsynth.training.models import load_model, lora_config
from mathsynth.training.runner import TrainResult, run_fingerprint, start_run, train_and_save
from mathsynth.training.trl_args import common_args


def fingerprint(data: Path, model: str, settings: TrainSettings) -> dict[str, object]:
    """What makes two DPO runs the same run (`training.runner.run_fingerprint`)."""
    return run_fingerprint("dpo", data, model, settings.dpo, settings)


def run_dpo(
    data: Path,
    model: str,
    output: Path,
    settings: TrainSettings,
    *,
    overwrite: bool = False,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Preference-tune `model` on the dpo pairs of the dataset `data`, into `output`;
    `callbacks` are transformers TrainerCallbacks.

    Failure modes: InputFileError (no dataset / no dpo rows), OutputDirError (see
    `runner.check_output`), ModelError (model cannot be loaded; for `rise`, a chat template
    or tokenizer the spans cannot be mapped through), ConfigError (precision).
    """
    from trl import DPOConfig, DPOTrainer

    rise = settings.dpo.loss == "rise"
    dataset = load_table(data, "dpo", RISE_COLUMNS if rise else DPO_COLUMNS)
    dataset = sample_rows(dataset, settings.dpo.max_rows, settings.seed)
    target = {"max_steps": settings.dpo.max_steps, "epochs": settings.dpo.epochs}
    start = start_run(output, fingerprint(data, model, settings), target, overwrite)
    if start.finished is not None:
        return start.finished
    loaded = load_model(model, settings.precision)
    args = DPOConfig(
        **common_args(settings, settings.dpo, loaded.precision, output),
        beta=settings.dpo.beta,
        loss_type=["sigmoid"],
    )
    common = {
        "model": loaded.model,
        "args": args,
        "train_dataset": dataset,
        "processing_class": loaded.tokenizer,
        "peft_config": lora_config(settings.lora),
        "callbacks": callbacks,
    }
    if rise:
        from mathsynth.training.rise import RiseDPOTrainer, WeightedPreferenceCollator

        collator = WeightedPreferenceCollator(
            pad_token_id=loaded.tokenizer.pad_token_id,
            max_length=args.max_length,
            truncation_mode=args.truncation_mode,
        )
        trainer = RiseDPOTrainer(
            **common, data_collator=collator, span_weight=settings.dpo.rise_span_weight
        )
    else:
        trainer = DPOTrainer(**common)
    return train_and_save(
        trainer,
        loaded,
        start,
        stage="dpo",
        model=model,
        data=data,
        rows=len(dataset),
    )
