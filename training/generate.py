"""Answering benchmark questions with a model: vLLM where it is installed and a GPU is
present, else batched transformers `generate` (greedy unless a temperature is set).

Each question is one user turn rendered with the model's chat template and a generation
prompt, the same shape as the sft rows the model was fine-tuned on.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from mathsynth.errors import ConfigError
from mathsynth.train_settings import EvalSettings

Progress = Callable[[int, int], None]


def choose_backend(requested: str) -> str:
    """`auto` is vLLM when importable and a CUDA GPU is present, else transformers.

    Failure modes: ConfigError for `vllm` when it is not installed or there is no GPU.
    """
    import torch

    has_vllm = importlib.util.find_spec("vllm") is not None
    gpu = torch.cuda.is_available()
    if requested == "vllm" and not (has_vllm and gpu):
        missing = "the package 'vllm' (pip install vllm)" if not has_vllm else "a CUDA GPU"
        raise ConfigError(f"--backend vllm needs {missing}; use --backend transformers")
    if requested == "auto":
        return "vllm" if has_vllm and gpu else "transformers"
    return requested


def conversations(questions: list[str], template: str) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": template.format(question=q)}] for q in questions]


def generate(
    model: str, questions: list[str], settings: EvalSettings, *, seed: int = 0,
    progress: Progress | None = None,
) -> tuple[str, list[str]]:  # fmt: skip
    """(backend used, one completion per question, in order).

    Failure modes: ConfigError (backend), ModelError (model cannot be loaded / no template).
    """
    backend = choose_backend(settings.backend)
    chats = conversations(questions, settings.prompt_template)
    if backend == "vllm":
        return backend, _generate_vllm(model, chats, settings, seed)
    return backend, _generate_transformers(model, chats, settings, seed, progress)


def _generate_vllm(
    model: str, chats: list[list[dict[str, str]]], settings: EvalSettings, seed: int
) -> list[str]:
    from vllm import LLM, SamplingParams

    llm = LLM(model=model, seed=seed)
    params = SamplingParams(
        temperature=settings.temperature, max_tokens=settings.max_new_tokens, seed=seed
    )
    outputs = llm.chat(chats, sampling_params=params, use_tqdm=True)
    return [out.outputs[0].text for out in outputs]


def _generate_transformers(
    model: str,
    chats: list[list[dict[str, str]]],
    settings: EvalSettings,
    seed: int,
    progress: Progress | None,
) -> list[str]:
    import torch
    from transformers import set_seed

    from mathsynth.training.models import load_model

    set_seed(seed)
    loaded = load_model(model, for_training=False)
    lm, tokenizer = loaded.model, loaded.tokenizer
    lm.eval()
    tokenizer.padding_side = "left"  # decoder-only: new tokens follow every prompt directly
    prompts = [
        tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats
    ]
    # Longest first, in batches of similar length: less padding, and an out-of-memory error
    # (if any) comes with the first batch rather than the last.
    order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
    completions: list[str] = [""] * len(prompts)
    sampling: dict[str, Any] = (
        {"do_sample": True, "temperature": settings.temperature}
        if settings.temperature > 0
        else {"do_sample": False}
    )
    bar = None
    if progress is None:  # the terminal's progress bar (tqdm comes with transformers)
        from tqdm.auto import tqdm

        bar = tqdm(total=len(prompts), desc="generating", unit="answer")
    done = 0
    for start in range(0, len(order), settings.batch_size):
        batch = order[start : start + settings.batch_size]
        encoded = tokenizer(
            [prompts[i] for i in batch], return_tensors="pt", padding=True,
            add_special_tokens=False,
        ).to(lm.device)  # fmt: skip
        with torch.inference_mode():
            output = lm.generate(
                **encoded,
                max_new_tokens=settings.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id,
                **sampling,
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        for i, text in zip(
            batch, tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True
        ):
            completions[i] = text
        done += len(batch)
        if progress is not None:
            progress(done, len(prompts))
        elif bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    return completions
