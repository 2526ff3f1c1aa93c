"""The `train:` settings as keyword arguments of TRL's SFTConfig / DPOConfig (both are
transformers TrainingArguments), so each stage sets only what is its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mathsynth.train_settings import StageSettings, TrainSettings
from mathsynth.training.models import Precision, precision_args
from mathsynth.training.runner import CHECKPOINTS


def common_args(
    settings: TrainSettings, stage: StageSettings, precision: Precision, output: Path
) -> dict[str, Any]:
    return {
        "output_dir": str(output / CHECKPOINTS),
        "learning_rate": stage.learning_rate,
        "num_train_epochs": stage.epochs,
        "max_steps": stage.max_steps if stage.max_steps is not None else -1,
        "per_device_train_batch_size": stage.batch_size,
        "gradient_accumulation_steps": stage.gradient_accumulation_steps,
        "max_length": stage.max_length,
        "warmup_steps": stage.warmup_steps,
        "lr_scheduler_type": stage.lr_scheduler,
        "weight_decay": stage.weight_decay,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "logging_steps": settings.logging_steps,
        # The first step's loss is where a curve starts: without it a short run has no
        # "before" to compare with.
        "logging_first_step": True,
        "save_steps": settings.save_steps,
        "save_total_limit": 2,
        "seed": settings.seed,
        "report_to": settings.report_to or "none",
        # Pinned host memory only helps copies to a GPU (and warns without one).
        "dataloader_pin_memory": _has_gpu(),
        **precision_args(precision),
    }


def _has_gpu() -> bool:
    import torch

    return torch.cuda.is_available()
