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
    """

    messages: list[Message]
    n: int = 1
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    purpose: str = ""
    first_sample: int = 0

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


def sample_key(model: str, messages: list[Message], sampling: dict[str, Any], index: int) -> str:
    """The cache key of sample `index` of a request: sha256 of its canonical JSON.

    Everything that changes the distribution of the reply is in it, and nothing else (no
    base URL, key or purpose), so editing one prompt invalidates only that prompt's samples.
    """
    blob = json.dumps(
        {"model": model, "messages": messages, "sampling": sampling, "sample": index},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Completion:
    """One usable sample. `cached` samples cost nothing now; `cost_usd` is what they cost when
    first answered. `request_hash` is the sample's cache key (provenance links to it)."""

    text: str
    finish_reason: str
    tokens_in: int
    tokens_out: int
    cost_usd: float
    cached: bool
    model: str
    request_hash: str
