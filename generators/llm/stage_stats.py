"""An LLM-driven stage's requests, counted in that stage's stats.

The client's own `stats` cover the whole build; these per-stage counters (`llm_requests`,
`tokens_in`, `tokens_out` (thinking included), `reasoning_tokens`, `cost_usd_micros`) say what
each generator's artifact table cost.
"""

from __future__ import annotations

from collections.abc import Sequence

from mathsynth.generators.llm.chat import ChatRequest, Completion
from mathsynth.generators.llm.client import LLMClient, Result
from mathsynth.generators.llm.errors import LLMRequestError
from mathsynth.stage import Stage


def count_usage(stage: Stage, completions: Sequence[Completion]) -> None:
    """Add fresh (not cached) tokens and cost to a stage's stats for its artifact table."""
    for c in completions:
        if not c.cached:
            stage.stat_update("tokens_in", c.tokens_in)
            stage.stat_update("tokens_out", c.tokens_out)
            if c.reasoning_tokens:
                stage.stat_update("reasoning_tokens", c.reasoning_tokens)
            stage.stat_update("cost_usd_micros", round(c.cost_usd * 1_000_000))


def complete_counted(
    client: LLMClient, stage: Stage, requests: Sequence[ChatRequest]
) -> list[Result]:
    """`client.complete_many(requests)`, counting the requests and the usage of every answered
    one in `stage`'s stats. Failed requests come back as LLMRequestError, uncounted beyond
    `llm_requests`; no requests means no call and nothing counted."""
    if not requests:
        return []
    results = client.complete_many(requests)
    stage.stat_update("llm_requests", len(requests))
    for result in results:
        if not isinstance(result, LLMRequestError):
            count_usage(stage, result)
    return results
