"""What goes to the model (`ChatRequest`) and what comes back (`Completion`)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

Message = dict[str, str]


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One prompt and its sampling parameters; asks for `n` samples.

    `temperature` / `max_tokens` of None take the build's LLM settings. `purpose` labels the
    request for logs and stats ("mugglemath.augment"); it is not part of the cache key, so
    two stages sending the same prompt with the same parameters share the answer.

    `first_sample` numbers the samples (`first_sample` .. `first_sample + n - 1`, the cache
    key's sample index; it is not sent). A task that must not share its answer with another
    task sending the same prompt sets it to its own index: MathScale walks repeat on a small
    concept graph, and sample 0 for each would make every repeat the same problem.

    Requests made from a prompt template (`prompts.Prompt.request`) carry the template's
    `prompt_hash` (part of the cache key) and, for JSON replies, the reply's
    `response_schema` (sent as `response_format` when structured outputs are on). Their
    `purpose` is the prompt kind, which picks the reply-token budget (`llm.max_tokens`).
    """

    messages: list[Message]
    n: int = 1
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    purpose: str = ""
    first_sample: int = 0
    prompt_hash: str = ""
    response_schema: dict[str, Any] | None = None

    def sampling(self, default_temperature: float, default_max_tokens: int) -> dict[str, Any]:
        """The sampling parameters as sent (defaults filled in), without `n`."""
        temperature = self.temperature if self.temperature is not None else default_temperature
        max_tokens = self.max_tokens if self.max_tokens is not None else default_max_tokens
        params: dict[str, Any] = {"temperature": temperature, "max_tokens": max_tokens}
        if self.top_p is not None:
            params["top_p"] = self.top_p
        if self.stop:
            params["stop"] = list(self.stop)
        return params


def sample_key(
    model: str,
    messages: list[Message],
    sampling: dict[str, Any],
    index: int,
    prompt_hash: str = "",
) -> str:
    """The cache key of sample `index` of a request: sha256 of its canonical JSON.

    Everything that changes the distribution of the reply is in it (sampling holds the
    response_format when one is sent), plus the hash of the prompt template the messages
    were rendered from, and nothing else (no base URL, key or purpose): editing one prompt
    template invalidates that prompt's samples and no other.
    """
    fields: dict[str, Any] = {
        "model": model,
        "messages": messages,
        "sampling": sampling,
        "sample": index,
    }
    if prompt_hash:
        fields["prompt"] = prompt_hash
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Completion:
    """One usable sample. `cached` samples cost nothing now; `cost_usd` is what they cost when
    first answered. `request_hash` is the sample's cache key (provenance links to it).

    `text` is the answer only: a reasoning model's thinking (a leading <think> block, or the
    server's `reasoning_content` / `reasoning` field) is never in it. `reasoning_tokens`
    counts that thinking (included in `tokens_out`); `reasoning` holds its text only when
    `llm.keep_reasoning` asks for it in provenance. `prompt` / `prompt_hash` name the prompt
    template the request was rendered from."""

    text: str
    finish_reason: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    cached: bool
    model: str
    request_hash: str
    reasoning_tokens: int = 0
    reasoning: str | None = None
    prompt: str = ""
    prompt_hash: str = ""
