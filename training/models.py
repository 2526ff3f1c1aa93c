"""Loading a causal LM and its tokenizer for training or generation, choosing the precision
the device supports, and the LoRA adapter config.

A model is a local directory (`save_pretrained` output, e.g. what `mathsynth train` wrote) or
a Hugging Face Hub id; the Hub is reached only when the id is not a local directory (set
HF_HUB_OFFLINE=1 to forbid it).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mathsynth.errors import ConfigError, ModelError
from mathsynth.train_settings import LoRASettings

Precision = Literal["bf16", "fp16", "fp32"]


def resolve_precision(requested: str) -> Precision:
    """`auto` becomes bf16 on a GPU that supports it, fp16 on another GPU, fp32 on the CPU.

    Failure modes: ConfigError for fp16 without a CUDA GPU (PyTorch has no fp16 mixed
    precision on the CPU).
    """
    import torch

    cuda = torch.cuda.is_available()
    if requested == "auto":
        if cuda:
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "fp32"
    if requested == "fp16" and not cuda:
        raise ConfigError("train.precision fp16 needs a CUDA GPU; use bf16, fp32 or auto")
    return requested  # type: ignore[return-value]


def precision_args(precision: Precision) -> dict[str, bool]:
    """The TrainingArguments flags for `precision` (TRL's configs default bf16 to True)."""
    return {"bf16": precision == "bf16", "fp16": precision == "fp16"}


@dataclass
class LoadedModel:
    model: Any  # transformers.PreTrainedModel
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    precision: Precision


def load_model(name: str, precision: str = "auto", *, for_training: bool = True) -> LoadedModel:
    """The causal LM `name` and its tokenizer, in the dtype `precision` resolves to (bf16
    weights for bf16; fp32 weights under fp16 mixed precision, which trains badly on fp16
    weights). The tokenizer gets a pad token (its eos) when it has none.

    Failure modes: ModelError when the model or tokenizer cannot be loaded (no such
    directory, unknown Hub id, no network, not a causal LM) or has no chat template (the
    training rows and the evaluation prompts are conversations).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    check_model_name(name)
    resolved = resolve_precision(precision)
    dtype = torch.bfloat16 if resolved == "bf16" else torch.float32
    kwargs: dict[str, Any] = {"dtype": dtype}
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        # Padding-free packing keeps sequences apart without a padded mask only with it.
        kwargs["attn_implementation"] = "flash_attention_2"
    try:
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, **kwargs)
    except Exception as exc:  # OSError, ValueError, HF hub errors: all mean "cannot load"
        raise ModelError(f"cannot load model {name!r}: {_first_line(exc)}") from None
    if not getattr(tokenizer, "chat_template", None):
        raise ModelError(
            f"model {name!r} has no chat template: the rows are conversations; use an "
            "instruct model or set `chat_template` in its tokenizer_config.json"
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if torch.cuda.is_available() and not for_training:
        model = model.to("cuda")
    return LoadedModel(model, tokenizer, resolved)


def lora_config(settings: LoRASettings) -> Any:
    """peft's LoraConfig for a causal LM, or None when LoRA is off."""
    if not settings.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        task_type="CAUSAL_LM",
    )


def check_model_name(name: str) -> None:
    """Refuse a model meant as a local directory (a Hub id is `name` or `org/name`; anything
    else is a path) that does not exist, before anything is loaded or downloaded.
    Failure modes: ModelError."""
    path = Path(name).expanduser()
    meant_as_path = name.startswith(("/", ".", "~")) or name.count("/") > 1 or path.exists()
    if meant_as_path and not path.is_dir():
        raise ModelError(f"cannot load model {name!r}: no such directory")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
