"""The `train:` section of the config: hyperparameters of `mathsynth train sft|dpo` and
`mathsynth eval`. Defaults suit a 0.5-8B instruct model on one GPU; every field can be set in
the YAML file (`train: {sft: {learning_rate: 1e-5}}`), as an environment variable
(`MATHSYNTH_TRAIN__SFT__LEARNING_RATE=1e-5`) or, for the few that have one, by a flag.

Nothing here changes what a build produces, so the section is left out of the build's
content hash (mathsynth/config.py). The values map one to one onto TRL's SFTConfig /
DPOConfig and peft's LoraConfig (training/); this module imports neither, so the base install
validates a config without the `train` extra.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StageSettings(_Section):
    """What SFT and DPO share: the optimiser, the schedule and the batch."""

    learning_rate: float = Field(gt=0)
    epochs: float = Field(1.0, gt=0, description="passes over the data (unless max_steps)")
    max_steps: int | None = Field(None, ge=1, description="stop after N optimiser steps")
    max_rows: int | None = Field(None, ge=1, description="train on N rows drawn at random")
    batch_size: int = Field(8, ge=1, description="per device")
    gradient_accumulation_steps: int = Field(1, ge=1)
    max_length: int = Field(1024, ge=16, description="tokens per sequence (per packed block)")
    warmup_steps: int = Field(0, ge=0)
    lr_scheduler: str = "cosine"
    weight_decay: float = Field(0.0, ge=0)


class SFTSettings(StageSettings):
    learning_rate: float = Field(2e-5, gt=0)
    packing: bool = Field(True, description="pack several rows into each max_length block")
    assistant_only_loss: bool = Field(
        False, description="loss on the solution only (needs a template with generation marks)"
    )


class DPOSettings(StageSettings):
    learning_rate: float = Field(1e-6, gt=0)
    batch_size: int = Field(4, ge=1)
    beta: float = Field(0.1, gt=0)
    loss: Literal["sigmoid", "rise"] = Field(
        "sigmoid", description="sigmoid: TRL's DPO; rise: edit-span tokens weighted"
    )
    rise_span_weight: float = Field(
        3.0, ge=0, description="weight of a token inside an edit span (1.0 elsewhere)"
    )


class LoRASettings(_Section):
    enabled: bool = False
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: str | list[str] = "all-linear"


class EvalSettings(_Section):
    backend: Literal["auto", "vllm", "transformers"] = Field(
        "auto", description="auto: vLLM when installed and a GPU is present"
    )
    batch_size: int = Field(16, ge=1, description="prompts per generate() call (transformers)")
    max_new_tokens: int = Field(512, ge=1)
    temperature: float = Field(0.0, ge=0, description="0 = greedy")
    split: str = Field("test", description="split of a Hub or save_to_disk benchmark")
    answer_timeout_s: float = Field(2.0, gt=0, description="per answer-equivalence check")
    prompt_template: str = Field(
        "{question}", description="the user turn; e.g. add an instruction to box the answer"
    )

    @field_validator("prompt_template")
    @classmethod
    def _has_question(cls, value: str) -> str:
        try:
            value.format(question="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"must contain {{question}} and no other field ({exc})") from None
        if "{question}" not in value:
            raise ValueError("must contain {question}")
        return value


class TrainSettings(_Section):
    sft: SFTSettings = Field(default_factory=SFTSettings)
    dpo: DPOSettings = Field(default_factory=DPOSettings)
    lora: LoRASettings = Field(default_factory=LoRASettings)
    eval: EvalSettings = Field(default_factory=EvalSettings)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 where the GPU supports it, else fp16 on a GPU, fp32 on CPU"
    )
    gradient_checkpointing: bool = True
    seed: int = 0
    logging_steps: int = Field(10, ge=1)
    save_steps: int = Field(500, ge=1, description="checkpoint every N steps (resumable)")
    report_to: list[str] = Field(
        default_factory=list, description="trackers for transformers (wandb, tensorboard, ...)"
    )
