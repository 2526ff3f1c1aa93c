"""RISE's subtle-error-aware objective as a small DPOTrainer subclass.

A RISE pair differs from its chosen solution in a few characters (one injected error carried
through the steps after it); the rest of the two solutions is the same text. Plain DPO sums
the log-probability ratios over every completion token, so the few tokens that make the
rejected solution wrong weigh as much as the many it shares with the chosen one. Here each
token's log-probability is multiplied by a weight before the sum, on the policy and on the
reference alike:

    log pi(y | x)  =  sum_t  w_t * log pi(y_t | x, y_<t),    w_t = span_weight inside a span, else 1

with the spans of the rejected solution as the build recorded them (`spans`, character
offsets into `rejected_text`, covering every changed character) and, on the chosen side, the
regions where the chosen text differs from the rejected one (the same diff, from the other
side: `generators.rise.spans.diff_spans`). `span_weight=1` is plain DPO.

Character spans become token weights through the tokenizer's offset mapping of the rendered
conversation, checked token for token against the ids TRL trains on. The weights ride along
the batch (`token_weights`, aligned with `input_ids`) and are applied by a forward hook on
the module every policy and reference forward goes through, so TRL's loss, its reference
handling (a separate model, PEFT's disabled adapter, precomputed log-probabilities) and its
metrics stay TRL's own; the logged `logps/*` and `rewards/*` are the weighted ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from mathsynth.errors import ModelError
from mathsynth.generators.rise.spans import diff_spans

WEIGHT_COLUMNS = ("chosen_weights", "rejected_weights")


def completion_weights(
    tokenizer: Any,
    conversation: list[dict[str, str]],
    text: str,
    spans: Sequence[dict[str, int]],
    ids: list[int],
    prompt_len: int,
    span_weight: float,
) -> list[float]:
    """One weight per completion token of `ids` (the tokenized `conversation`, whose last
    message is the completion `text`; its first `prompt_len` ids are the prompt).

    Failure modes: ModelError when the chat template does not render `text` verbatim, or
    tokenizing the rendered conversation does not reproduce `ids` (spans could not be mapped).
    """
    rendered = tokenizer.apply_chat_template(conversation, tokenize=False)
    start = rendered.rfind(text)
    if start < 0:
        raise ModelError(
            "--loss rise: the chat template does not render the solution text verbatim, so "
            "the edit spans cannot be located; use --loss sigmoid with this model"
        )
    encoded = tokenizer(rendered, add_special_tokens=False, return_offsets_mapping=True)
    if list(encoded["input_ids"]) != list(ids):
        raise ModelError(
            "--loss rise: tokenizing the rendered conversation does not give the ids the "
            "trainer uses, so the edit spans cannot be mapped to tokens; use --loss sigmoid"
        )
    regions = [(start + s["start"], start + s["end"]) for s in spans]
    return [
        span_weight if any(a < end and b > begin for begin, end in regions) else 1.0
        for a, b in encoded["offset_mapping"][prompt_len:]
    ]


@dataclass
class WeightedPreferenceCollator(DataCollatorForPreference):
    """TRL's preference collator plus `token_weights`, aligned with `input_ids` (chosen rows
    first, then rejected, as TRL batches them), truncated and padded the same way."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = super().torch_call(examples)
        rows = [[1.0] * len(e["prompt_ids"]) + list(e["chosen_weights"]) for e in examples]
        rows += [[1.0] * len(e["prompt_ids"]) + list(e["rejected_weights"]) for e in examples]
        if self.max_length is not None:
            keep = (
                slice(None, self.max_length)
                if self.truncation_mode == "keep_start"
                else slice(-self.max_length, None)
            )
            rows = [row[keep] for row in rows]
        width = batch["input_ids"].shape[1]
        weights = torch.zeros((len(rows), width), dtype=torch.float32)
        for i, row in enumerate(rows):
            weights[i, : len(row)] = torch.tensor(row, dtype=torch.float32)
        batch["token_weights"] = weights
        return batch


class RiseDPOTrainer(DPOTrainer):
    """DPOTrainer on RISE pairs whose log-ratios weight the edit-span tokens (module doc).

    The train dataset needs, besides TRL's conversational `prompt` / `chosen` / `rejected`,
    the columns `chosen_text`, `rejected_text` and `spans` of the dpo table.
    """

    def __init__(self, *args: Any, span_weight: float, **kwargs: Any) -> None:
        # Read by _prepare_dataset, which the parent's __init__ calls.
        self.span_weight = span_weight
        super().__init__(*args, **kwargs)

    def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, name: str) -> Any:
        dataset = super()._prepare_dataset(dataset, processing_class, args, name)
        if WEIGHT_COLUMNS[0] in dataset.column_names:  # already prepared (evaluate() again)
            return dataset
        tokenizer = getattr(processing_class, "tokenizer", processing_class)
        if not getattr(tokenizer, "is_fast", False):
            raise ModelError("--loss rise needs a fast tokenizer (character offsets of tokens)")

        def weigh(example: dict[str, Any]) -> dict[str, list[float]]:
            prompt_len = len(example["prompt_ids"])
            prompt = example["prompt"]
            chosen_ids = example["prompt_ids"] + example["chosen_ids"]
            rejected_ids = example["prompt_ids"] + example["rejected_ids"]
            chosen_spans = diff_spans(example["rejected_text"], example["chosen_text"])
            return {
                "chosen_weights": completion_weights(
                    tokenizer, prompt + example["chosen"], example["chosen_text"],
                    chosen_spans, chosen_ids, prompt_len, self.span_weight,
                ),
                "rejected_weights": completion_weights(
                    tokenizer, prompt + example["rejected"], example["rejected_text"],
                    example["spans"], rejected_ids, prompt_len, self.span_weight,
                ),
            }  # fmt: skip

        return dataset.map(weigh, desc=f"Weighting edit-span tokens of {name} dataset")

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None:
            self._signature_columns = [*self._signature_columns, *WEIGHT_COLUMNS]

    def _hooked_modules(self, model: Any) -> list[Any]:
        """The modules whose forward every policy / reference forward passes through once:
        the policy's causal LM (under PEFT the base model inside the adapter wrappers, which
        the reference forwards with the adapter disabled also reach; the wrappers themselves
        are not all called through `__call__`) and a separate reference model."""
        from accelerate.utils import is_peft_model

        unwrapped = self.accelerator.unwrap_model(model)
        modules = [unwrapped.get_base_model() if is_peft_model(unwrapped) else unwrapped]
        if self.ref_model is not None:
            modules.append(self.ref_model)
        return modules

    @contextlib.contextmanager
    def _weighted(self, modules: list[Any], weights: torch.Tensor) -> Iterator[None]:
        """Multiply the per-token log-probabilities the fused LM head returns by `weights`
        (shifted by one: log_probs[:, t] scores input_ids[:, t + 1])."""
        shifted = weights[:, 1:]

        def hook(module: Any, args: Any, kwargs: dict[str, Any], output: Any) -> Any:
            if not kwargs.get("fused_lm_head"):
                return output
            log_probs = output.log_probs
            w = shifted.to(device=log_probs.device, dtype=log_probs.dtype)
            n = w.size(1)
            if log_probs.size(1) > n:  # prompt-learning PEFT prepends virtual tokens
                output.log_probs = torch.cat([log_probs[:, :-n], log_probs[:, -n:] * w], dim=1)
            else:
                output.log_probs = log_probs * w
            return output

        handles = [
            m.register_forward_hook(hook, with_kwargs=True)
            for m in {id(m): m for m in modules}.values()
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()

    def _compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool) -> Any:
        weights = inputs.pop("token_weights")
        with self._weighted(self._hooked_modules(model), weights):
            return super()._compute_loss(model, inputs, return_outputs)

    def compute_ref_log_probs(self, model: Any, inputs: dict[str, Any]) -> Any:
        inputs = dict(inputs)
        weights = inputs.pop("token_weights")
        # `model` is the reference model or the policy (adapter disabled): both are hooked.
        with self._weighted(self._hooked_modules(model), weights):
            return super().compute_ref_log_probs(model, inputs)
