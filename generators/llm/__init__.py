"""The LLM layer every LLM-driven generator shares.

    client = LLMClient(settings, api_key, cache_path)
    results = client.complete_many([ChatRequest(messages=[...], n=4, purpose="...")])
    for result in results:
        if isinstance(result, LLMRequestError):
            yield result.to_rejection(stage, record)      # raw reply and reason kept

`client` caches every answered sample by request content, retries transient failures, and
accounts tokens and cost; `parsing` pulls JSON / code / answers out of replies.
"""

from mathsynth.generators.llm.accounting import cost_usd, usage_provenance
from mathsynth.generators.llm.cache import RequestCache
from mathsynth.generators.llm.chat import ChatRequest, Completion
from mathsynth.generators.llm.client import LLMClient
from mathsynth.generators.llm.errors import LLMRequestError, LLMUnavailableError, ReplyParseError
from mathsynth.generators.llm.retry import RetryPolicy
from mathsynth.generators.llm.stage_stats import complete_counted

__all__ = [
    "ChatRequest",
    "Completion",
    "LLMClient",
    "LLMRequestError",
    "LLMUnavailableError",
    "ReplyParseError",
    "RequestCache",
    "RetryPolicy",
    "complete_counted",
    "cost_usd",
    "usage_provenance",
]
