"""The LLM layer's errors: one fatal (the endpoint is unusable), two per reply (skip and record).

A per-request failure never stops a build: it comes back in place of that request's
completions, and the generator turns it into a `rejected` row carrying the raw reply. Only
`LLMUnavailableError` (nothing can succeed: no endpoint, unreachable, bad key, unknown model)
is raised, and its message is the CLI's one-line error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mathsynth.errors import MathsynthError
from mathsynth.records import Rejection

if TYPE_CHECKING:
    from mathsynth.stage import Stage

# Longest raw reply kept in a rejected row: enough to see what went wrong, bounded in size.
RAW_LIMIT = 20_000


class LLMUnavailableError(MathsynthError):
    """The endpoint cannot serve this build at all: not configured, unreachable, auth failed,
    or the model is unknown. Build-fatal."""


class _ReplyError(MathsynthError):
    """Base for per-reply failures: a machine-groupable `reason`, a `detail`, the `raw` text."""

    prefix = ""

    def __init__(self, reason: str, detail: str = "", raw: str | None = None) -> None:
        self.reason = reason
        self.detail = detail or reason
        self.raw = raw[:RAW_LIMIT] if raw is not None else None
        super().__init__(f"{reason}: {self.detail}")

    @property
    def code(self) -> str:
        """The rejection reason: the prefix (llm_ / parse_) and the reason."""
        return f"{self.prefix}{self.reason}"

    def rejected_input(self, record: dict[str, Any]) -> dict[str, Any]:
        """`record` (the generator's input) with the raw reply that failed."""
        return {**record, "raw_reply": self.raw}

    def to_rejection(self, stage: Stage[Any], record: dict[str, Any]) -> Rejection:
        """The `rejected` row `stage` makes (and counts) for `record` and this failure."""
        return stage.reject(self.rejected_input(record), self.code, self.detail)


class LLMRequestError(_ReplyError):
    """One request failed after its retries, or every reply to it was unusable.

    Reasons: "timeout", "connection", "http_<status>", "malformed_response" (a body that is
    not a chat completion), "truncated" (finish_reason "length"), "empty", "refused"
    (the server's refusal field or a filtered reply), "no_choices".
    """

    prefix = "llm_"


class ReplyParseError(_ReplyError):
    """A reply arrived but does not contain what the prompt asked for.

    Reasons: "empty", "refusal", "no_json", "malformed_json", "no_code", "no_answer",
    "bad_fields" (JSON of the wrong shape).
    """

    prefix = "parse_"
