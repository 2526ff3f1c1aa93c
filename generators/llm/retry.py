"""When to retry a failed request and how long to wait first."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with jitter, capped; a server's Retry-After wins when it gives one.

    `max_retry_after_s` bounds how long a Retry-After may hold a request: a server asking for
    an hour is treated as asking for this long, so a build never silently stalls.
    """

    base_s: float = 0.5
    cap_s: float = 20.0
    max_retry_after_s: float = 60.0

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds before retry number `attempt` (0-based): base * 2^attempt, jittered to
        50-100% so that many requests failing together do not retry in lockstep."""
        r = rng or random
        return min(self.cap_s, self.base_s * 2**attempt) * r.uniform(0.5, 1.0)

    def delay(
        self, attempt: int, headers: Mapping[str, str] | None, rng: random.Random | None = None
    ) -> float:
        hinted = retry_after_s(headers) if headers is not None else None
        if hinted is not None:
            return min(hinted, self.max_retry_after_s)
        return self.backoff(attempt, rng)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds from `retry-after-ms` (OpenAI) or `Retry-After` (seconds or an HTTP date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    ms = lowered.get("retry-after-ms")
    if ms is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)
