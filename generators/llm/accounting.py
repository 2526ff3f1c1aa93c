"""Token and cost accounting: prices from `LLMSettings.prices`, usage summaries for provenance.

Costs are computed once, when a sample is first answered, and stored with it in the cache; a
replayed sample reports that original cost with `cached=True` and adds nothing to the build's
spend.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mathsynth.config import ModelPrice
from mathsynth.generators.llm.chat import Completion


def price_for(prices: Mapping[str, ModelPrice], model: str) -> ModelPrice | None:
    """The price of `model`: an exact entry, else the longest entry that prefixes it (so
    "gpt-4o" prices "gpt-4o-2024-08-06"), else None (self-hosted: free)."""
    if model in prices:
        return prices[model]
    matches = [name for name in prices if model.startswith(name)]
    return prices[max(matches, key=len)] if matches else None


def cost_usd(
    prices: Mapping[str, ModelPrice],
    model: str,
    tokens_in: int,
    tokens_out: int,
    *,
    batch: bool = False,
) -> float:
    """USD for one answered request; `batch` at the model's batch prices (ModelPrice)."""
    price = price_for(prices, model)
    if price is None:
        return 0.0
    per_in, per_out = price.per_mtok(batch)
    return (tokens_in * per_in + tokens_out * per_out) / 1_000_000


def split_evenly(total: int, parts: int) -> list[int]:
    """`total` split into `parts` integers that sum to it (earlier parts take the remainder).

    A reply with several choices reports one usage for all of them; this apportions it so
    per-record token counts add up to what the server billed.
    """
    if parts <= 0:
        return []
    base, rest = divmod(max(total, 0), parts)
    return [base + (1 if i < rest else 0) for i in range(parts)]


def usage_provenance(completions: Sequence[Completion]) -> dict[str, Any]:
    """What a record's `provenance` says about the LLM calls it came from: model, tokens
    (thinking included in `tokens_out`, and counted apart), cost, the requests' cache keys,
    the prompt templates they were rendered from ({kind: template hash}) and, when
    `llm.keep_reasoning` is on, the model's thinking for each."""
    usage: dict[str, Any] = {
        "model": completions[0].model if completions else None,
        "tokens_in": sum(c.tokens_in for c in completions),
        "tokens_out": sum(c.tokens_out for c in completions),
        "reasoning_tokens": sum(c.reasoning_tokens for c in completions),
        "cost_usd": round(sum(c.cost_usd for c in completions), 8),
        "cached": all(c.cached for c in completions) if completions else False,
        "request_hashes": [c.request_hash for c in completions],
        "prompts": {c.prompt: c.prompt_hash for c in completions if c.prompt},
    }
    if any(c.reasoning is not None for c in completions):
        usage["reasoning"] = [c.reasoning for c in completions]
    return usage
