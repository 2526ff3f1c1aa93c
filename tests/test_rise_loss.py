"""RISE's objective on a tiny model: edit spans become exactly the tokens that carry them, and
the trainer's loss is DPO's sigmoid loss over span-weighted log-ratios, checked against the
same quantity computed by hand from plain forward passes (and equal to TRL's DPO at weight 1).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("trl")

import torch.nn.functional as F  # noqa: E402
from datasets import Dataset  # noqa: E402
from tiny_lm import make_tiny_lm  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl import DPOConfig, DPOTrainer  # noqa: E402

from mathsynth.generators.rise.spans import diff_spans  # noqa: E402
from mathsynth.training.rise import (  # noqa: E402
    RiseDPOTrainer,
    WeightedPreferenceCollator,
    completion_weights,
)

PAIRS = [
    (
        "A garden is 34 m long and 21 m wide. Fence costs 20 dollars per meter. Cost?",
        "The perimeter is 2 * (34 + 21) = 110 m.\nThe fence costs 110 * 20 = 2200 dollars.\n"
        "The answer is 2200.",
        "The perimeter is 2 * (34 + 21) = 110 m.\nThe fence costs 110 * 22 = 2420 dollars.\n"
        "The answer is 2420.",
    ),
    (
        "Tom has 12 apples and buys 7 more. How many apples does he have?",
        "He has 12 + 7 = 19 apples.\nThe answer is 19.",
        "He has 12 - 7 = 5 apples.\nThe answer is 5.",
    ),
    (
        "A box holds 6 rows of 8 eggs. How many eggs?",
        "There are 6 * 8 = 48 eggs.\nThe answer is 48.",
        "There are 6 * 9 = 54 eggs.\nThe answer is 54.",
    ),
]


def _rows() -> list[dict[str, Any]]:
    return [
        {
            "prompt": [{"role": "user", "content": q}],
            "chosen": [{"role": "assistant", "content": c}],
            "rejected": [{"role": "assistant", "content": r}],
            "chosen_text": c,
            "rejected_text": r,
            "spans": diff_spans(c, r),
        }
        for q, c, r in PAIRS
    ]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    texts = [t for pair in PAIRS for t in pair] * 20
    return make_tiny_lm(texts, tmp_path_factory.mktemp("tiny") / "lm", vocab_size=300)


def _ref_model(tiny: Path) -> Any:
    """A reference model that differs from the policy, so the loss is not trivially ln 2."""
    ref = AutoModelForCausalLM.from_pretrained(tiny)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ref


def _args(tmp_path: Path) -> DPOConfig:
    return DPOConfig(
        output_dir=str(tmp_path / "ckpt"), bf16=False, report_to="none", beta=0.5,
        per_device_train_batch_size=len(PAIRS), max_length=256,
    )  # fmt: skip


def _trainer(tiny: Path, tmp_path: Path, span_weight: float | None) -> Any:
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    common = {
        "model": AutoModelForCausalLM.from_pretrained(tiny),
        "ref_model": _ref_model(tiny),
        "args": _args(tmp_path),
        "train_dataset": Dataset.from_list(_rows()),
        "processing_class": tokenizer,
    }
    if span_weight is None:
        return DPOTrainer(**common)
    collator = WeightedPreferenceCollator(pad_token_id=tokenizer.pad_token_id, max_length=256)
    return RiseDPOTrainer(**common, data_collator=collator, span_weight=span_weight)


def _batch(trainer: Any) -> dict[str, Any]:
    dataset = trainer._remove_unused_columns(trainer.train_dataset)
    return trainer._prepare_inputs(trainer.data_collator([dataset[i] for i in range(len(dataset))]))


def _weighted_logps(model: Any, batch: dict[str, Any], weights: Any) -> Any:
    """sum_t w_t * log p(token_t) over completion tokens, from a plain forward pass."""
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    logps = F.log_softmax(logits[:, :-1].float(), dim=-1)
    token_logps = logps.gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    mask = batch["completion_mask"][:, 1:].float()
    return (token_logps * mask * weights[:, 1:]).sum(dim=1)


def test_span_weights_fall_on_exactly_the_tokens_of_the_edits(tiny: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny)
    row = _rows()[0]
    conversation = row["prompt"] + row["rejected"]
    prompt_ids = tokenizer.apply_chat_template(
        row["prompt"], add_generation_prompt=True, return_dict=True
    )["input_ids"]
    ids = tokenizer.apply_chat_template(conversation, return_dict=True)["input_ids"]
    weights = completion_weights(
        tokenizer, conversation, row["rejected_text"], row["spans"], ids, len(prompt_ids), 3.0
    )
    completion = ids[len(prompt_ids) :]
    assert len(weights) == len(completion) and set(weights) == {1.0, 3.0}
    weighted = "".join(
        tokenizer.decode([t]) for t, w in zip(completion, weights, strict=True) if w > 1
    )
    changed = "".join(row["rejected_text"][s["start"] : s["end"]] for s in row["spans"])
    assert changed == "2224202420"  # "22", "2420", "2420": the edit and what it changed
    assert weighted.replace(" ", "") == changed
    assert "2200" not in weighted and "110" not in weighted


def test_weight_one_is_trls_dpo(tiny: Path, tmp_path: Path) -> None:
    plain = _trainer(tiny, tmp_path / "plain", None)
    rise = _trainer(tiny, tmp_path / "rise", 1.0)
    plain_loss = plain.compute_loss(plain.model, _batch(plain))
    rise_loss = rise.compute_loss(rise.model, _batch(rise))
    assert abs(plain_loss.item() - 0.6931) > 1e-3  # the reference differs from the policy
    assert rise_loss.item() == pytest.approx(plain_loss.item(), abs=1e-6)


def test_rise_loss_is_dpo_on_span_weighted_log_ratios(tiny: Path, tmp_path: Path) -> None:
    trainer = _trainer(tiny, tmp_path, 3.0)
    batch = _batch(trainer)
    weights = batch["token_weights"].clone()
    assert (weights > 1).any()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    policy = _weighted_logps(trainer.model, batch, weights)
    reference = _weighted_logps(trainer.ref_model, batch, weights)
    chosen, rejected = (policy - reference).chunk(2)
    expected = -F.logsigmoid(trainer.beta * (chosen - rejected)).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    unweighted = _weighted_logps(trainer.model, batch, torch.ones_like(weights))
    assert not torch.allclose(unweighted, policy)  # the weights did change the objective


@pytest.mark.parametrize("task", ["CAUSAL_LM", None])  # PeftModelForCausalLM, PeftModel
def test_with_lora_the_reference_is_the_disabled_adapter(
    tiny: Path, tmp_path: Path, task: str | None
) -> None:
    """Under PEFT the weights must apply once to the policy forward and once to the
    reference forward (the same module, adapter disabled)."""
    from peft import LoraConfig

    tokenizer = AutoTokenizer.from_pretrained(tiny)
    collator = WeightedPreferenceCollator(pad_token_id=tokenizer.pad_token_id, max_length=256)
    trainer = RiseDPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny),
        args=_args(tmp_path),
        train_dataset=Dataset.from_list(_rows()),
        processing_class=tokenizer,
        data_collator=collator,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", task_type=task),
        span_weight=3.0,
    )
    torch.manual_seed(2)
    with torch.no_grad():  # LoRA's B starts at zero: move it so policy and reference differ
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.1 * torch.randn_like(p))
    batch = _batch(trainer)
    weights = batch["token_weights"].clone()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    policy = _weighted_logps(trainer.model, batch, weights)
    with trainer.model.disable_adapter():
        reference = _weighted_logps(trainer.model, batch, weights)
    chosen, rejected = (policy - reference).chunk(2)
    expected = -F.logsigmoid(trainer.beta * (chosen - rejected)).mean()
    assert abs(expected.item() - 0.6931) > 1e-3
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
