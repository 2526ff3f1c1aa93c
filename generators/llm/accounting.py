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
    prices: Mapping[str, ModelPrice], model: str, tokens_in: int, tokens_out: int
) -> float:
    price = price_for(prices, model)
    if price is None:
        return 0.0
    return (tokens_in * price.input_per_mtok + tokens_out * price.output_per_mtok) / 1_000_000


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
    """What a record's `provenance` says about the LLM calls it came from."""
    return {
        "model": completions[0].model if completions else None,
        "tokens_in": sum(c.tokens_in for c in completions),
        "tokens_out": sum(c.tokens_out for c in completions),
        "cost_usd": round(sum(c.cost_usd for c in completions), 8),
        "cached": all(c.cached for c in completions) if completions else False,
        "request_hashes": [c.request_hash for c in completions],
    }
