"""The batch backend (`llm.backend: batch`): requests through a provider's Batch API.

OpenAI's Batch API (and the providers and servers that copy it) takes a JSONL file of
requests, runs it within a completion window (24 h) at about half the price and outside the
rate limits, and returns a JSONL file of replies:

    POST /v1/files      (purpose "batch")  the input: one line per request
        {"custom_id": "...", "method": "POST", "url": "/v1/chat/completions", "body": {...}}
    POST /v1/batches    {"input_file_id", "endpoint": "/v1/chat/completions",
                         "completion_window": "24h", "metadata": {...}}
    GET  /v1/batches/ID until its status is completed / failed / expired / cancelled
    GET  /v1/files/ID/content   the output (and error) file, one line per request
        {"custom_id": "...", "response": {"status_code": 200, "body": {chat completion}},
         "error": null}

The input file is the format vLLM's offline batch runner (`vllm run-batch -i FILE`) reads.

`BatchRunner.run(lines)` submits one batch per call (split at `llm.batch_max_requests`),
polls every `llm.batch_poll_s`, and returns each line's reply body or its error. Resuming: a
batch is identified by the digest of its input; before submitting, the runner looks the
digest up in the job store (the dataset catalog, `storage.catalog`) and then among the
server's recent batches (their metadata carry it), so a build that crashed while its batch
was running picks that batch up again instead of paying for it twice. Interrupting a build
never cancels a submitted batch.

Failure modes: LLMUnavailableError when the endpoint has no batch API, refuses the key, a
batch fails validation (every request in it would fail the same way), or the batch API stops
answering while a batch is polled (its id stays in the catalog; a rerun resumes it). Every
other failure is per line: an LLMRequestError with reason `http_<status>` (the line's status),
`batch_error`, or `batch_<status>` for a line left unanswered by an expired or cancelled batch.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import openai
from openai import AsyncOpenAI

from mathsynth.config import LLMSettings
from mathsynth.generators.llm.errors import LLMRequestError, LLMUnavailableError
from mathsynth.generators.llm.retry import RetryPolicy

log = logging.getLogger("mathsynth.llm")

ENDPOINT = "/v1/chat/completions"
_DONE = ("completed", "failed", "expired", "cancelled")
# Server-side batches that can still deliver (a resumed build keeps waiting for these).
_LIVE = ("validating", "in_progress", "finalizing", "completed")
# How many of the server's most recent batches are searched for one this build submitted.
_LIST_LIMIT = 100
# OpenAI caps an input file at 200 MB; stay below it.
_MAX_BYTES = 190_000_000
_METADATA_KEY = "mathsynth_digest"


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request of a batch: `custom_id` maps its reply back; `body` is the chat request."""

    custom_id: str
    body: dict[str, Any]

    def jsonl(self) -> str:
        record = {"custom_id": self.custom_id, "method": "POST", "url": ENDPOINT, "body": self.body}
        return json.dumps(record, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


class BatchJobStore(Protocol):
    """Where submitted batches are remembered across runs (`storage.catalog.Catalog`)."""

    def llm_batch(self, digest: str) -> dict[str, Any] | None: ...

    def save_llm_batch(
        self, digest: str, *, batch_id: str, endpoint: str, model: str, requests: int, status: str
    ) -> None: ...


Outcome = dict[str, Any] | LLMRequestError


class BatchRunner:
    """Submits, resumes and polls batches for one LLMClient (runs on the client's loop)."""

    def __init__(
        self,
        openai_client: AsyncOpenAI,
        settings: LLMSettings,
        jobs: BatchJobStore | None,
        base_url: str,
        stats: Counter[str],
        retry: RetryPolicy,
    ) -> None:
        self._openai = openai_client
        self.settings = settings
        self.jobs = jobs
        self.base_url = base_url
        self.stats = stats
        self.retry = retry
        self._rng = random.Random()

    async def run(self, lines: Sequence[BatchLine]) -> dict[str, Outcome]:
        """{custom_id: reply body (status 200) or LLMRequestError} for every line."""
        outcomes: dict[str, Outcome] = {}
        for chunk in _chunks(lines, self.settings.batch_max_requests):
            outcomes.update(await self._run_one(chunk))
        return outcomes

    async def _run_one(self, lines: list[BatchLine]) -> dict[str, Outcome]:
        data = ("\n".join(line.jsonl() for line in lines) + "\n").encode("utf-8")
        digest = hashlib.sha256(self.base_url.encode() + b"\n" + data).hexdigest()
        batch_id = await self._resumable(digest)
        if batch_id is None:
            batch_id = await self._submit(data, digest, len(lines))
        else:
            self.stats["batches_resumed"] += 1
            log.info(
                "resuming batch %s (%d requests) submitted by an earlier run", batch_id, len(lines)
            )
        batch = await self._wait(batch_id, digest, len(lines))
        if batch is None:  # the server no longer knows it: submit it again
            batch_id = await self._submit(data, digest, len(lines))
            batch = await self._wait(batch_id, digest, len(lines))
            if batch is None:
                raise LLMUnavailableError(
                    f"batch {batch_id} vanished from {self.base_url} right after it was created"
                )
        outcomes = await self._collect(batch, [line.custom_id for line in lines])
        await self._save(digest, batch_id, len(lines), "done")
        return outcomes

    # -- submitting and resuming ---------------------------------------------------------------

    async def _resumable(self, digest: str) -> str | None:
        """The id of a batch with this input that an earlier run submitted and did not read."""
        if self.jobs is not None:
            job = await asyncio.to_thread(self.jobs.llm_batch, digest)
            if job is not None and job["status"] == "submitted":
                return str(job["batch_id"])
        # Submitted, then crashed before the catalog heard of it: the server's list says.
        try:
            page = await self._openai.batches.list(limit=_LIST_LIMIT)
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            if getattr(exc, "status_code", None) in (401, 403):
                self._raise_if_fatal(exc)
            return None  # listing is a courtesy; a server without it may still run batches
        for batch in page.data:
            metadata = batch.metadata or {}
            if metadata.get(_METADATA_KEY) == digest and batch.status in _LIVE:
                await self._save(digest, batch.id, 0, "submitted")
                return batch.id
        return None

    async def _submit(self, data: bytes, digest: str, count: int) -> str:
        try:
            uploaded = await self._with_retries(
                lambda: self._openai.files.create(
                    file=(f"mathsynth-{digest[:16]}.jsonl", data, "application/jsonl"),
                    purpose="batch",
                )
            )
            batch = await self._with_retries(
                lambda: self._openai.batches.create(
                    input_file_id=uploaded.id,
                    endpoint=ENDPOINT,
                    completion_window=self.settings.batch_completion_window,  # type: ignore[arg-type]
                    metadata={_METADATA_KEY: digest},
                )
            )
        except openai.NotFoundError:
            raise LLMUnavailableError(self._no_batch_api()) from None
        except (openai.APIStatusError, openai.APIConnectionError) as exc:
            raise LLMUnavailableError(
                f"the batch API at {self.base_url} did not take the batch ({_why(exc)})"
            ) from None
        self.stats["batches_submitted"] += 1
        self.stats["requests"] += count
        await self._save(digest, batch.id, count, "submitted")
        log.info("submitted batch %s: %d requests", batch.id, count)
        return batch.id

    async def _save(self, digest: str, batch_id: str, count: int, status: str) -> None:
        if self.jobs is None:
            return
        await asyncio.to_thread(
            self.jobs.save_llm_batch,
            digest,
            batch_id=batch_id,
            endpoint=self.base_url,
            model=self.settings.model or "",
            requests=count,
            status=status,
        )

    # -- waiting -------------------------------------------------------------------------------

    async def _wait(self, batch_id: str, digest: str, count: int) -> Any | None:
        """The batch once it is done; None when the server does not know `batch_id`."""
        last = ""
        while True:
            try:
                batch = await self._with_retries(lambda: self._openai.batches.retrieve(batch_id))
            except openai.NotFoundError:
                return None
            except (openai.APIStatusError, openai.APIConnectionError) as exc:
                raise LLMUnavailableError(
                    f"lost the batch API at {self.base_url} while waiting for batch {batch_id} "
                    f"({_why(exc)}); rerun the build to resume it"
                ) from None
            counts = batch.request_counts
            progress = (
                f"{batch.status} {counts.completed}/{counts.total}" if counts else batch.status
            )
            if progress != last:
                log.info("batch %s: %s", batch_id, progress)
                last = progress
            if batch.status == "failed":
                await self._save(digest, batch_id, count, "failed")
                errors = getattr(batch.errors, "data", None) or []
                reason = "; ".join(str(e.message) for e in errors[:3]) or "no reason given"
                raise LLMUnavailableError(f"batch {batch_id} failed: {reason}")
            if batch.status in _DONE:
                return batch
            self.stats["batch_polls"] += 1
            await asyncio.sleep(self.settings.batch_poll_s)

    async def _collect(self, batch: Any, custom_ids: list[str]) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            try:
                content = await self._with_retries(
                    lambda fid=file_id: self._openai.files.content(fid)
                )
            except (openai.APIStatusError, openai.APIConnectionError) as exc:
                raise LLMUnavailableError(
                    f"cannot read the replies of batch {batch.id} from {self.base_url} "
                    f"({_why(exc)}); rerun the build to fetch them again"
                ) from None
            for number, line in enumerate(content.text.splitlines(), 1):
                if line.strip():
                    custom_id, outcome = _outcome(line, batch.id, number)
                    if custom_id is not None:
                        outcomes[custom_id] = outcome
        for custom_id in custom_ids:
            if custom_id not in outcomes:
                outcomes[custom_id] = LLMRequestError(
                    f"batch_{batch.status}",
                    f"batch {batch.id} ended {batch.status} without answering this request",
                )
        return outcomes

    # -- plumbing ------------------------------------------------------------------------------

    async def _with_retries(self, call: Any) -> Any:
        """`call()` retried on timeouts, connection errors, 429 and 5xx (max_retries times)."""
        for attempt in range(self.settings.max_retries + 1):
            try:
                return await call()
            except (openai.APIConnectionError, openai.APIStatusError) as exc:
                self._raise_if_fatal(exc)
                status = getattr(exc, "status_code", None)
                transient = status is None or status == 429 or status >= 500
                if not transient or attempt == self.settings.max_retries:
                    raise
                self.stats["retries"] += 1
                headers = dict(exc.response.headers) if status is not None else None
                await asyncio.sleep(self.retry.delay(attempt, headers, self._rng))
        raise AssertionError("unreachable")

    def _raise_if_fatal(self, exc: Exception) -> None:
        status = getattr(exc, "status_code", None)
        if status in (401, 403):
            raise LLMUnavailableError(
                f"the LLM endpoint {self.base_url} rejected the API key (HTTP {status}): "
                "set OPENAI_API_KEY or llm.api_key"
            )
        if status == 405:
            raise LLMUnavailableError(self._no_batch_api())

    def _no_batch_api(self) -> str:
        return (
            f"{self.base_url} has no batch API (/files, /batches): use llm.backend: online, "
            "or run the JSONL through the server's offline batch runner"
        )


def _why(exc: Exception) -> str:
    status = getattr(exc, "status_code", None)
    message = str(getattr(exc, "message", "") or exc).splitlines()[0][:200] if str(exc) else ""
    return f"HTTP {status}: {message}" if status is not None else (message or type(exc).__name__)


def _chunks(lines: Sequence[BatchLine], limit: int) -> list[list[BatchLine]]:
    chunks: list[list[BatchLine]] = []
    current: list[BatchLine] = []
    size = 0
    for line in lines:
        n = len(line.jsonl()) + 1
        if current and (len(current) >= limit or size + n > _MAX_BYTES):
            chunks.append(current)
            current, size = [], 0
        current.append(line)
        size += n
    if current:
        chunks.append(current)
    return chunks


def _outcome(line: str, batch_id: str, number: int) -> tuple[str | None, Outcome]:
    """(custom_id, reply body or error) of one output / error file line."""
    try:
        record = json.loads(line)
        custom_id = str(record["custom_id"])
    except (ValueError, KeyError, TypeError):
        log.warning("batch %s: output line %d is not a batch reply; ignored", batch_id, number)
        return None, LLMRequestError("batch_error", "unreadable output line")
    error = record.get("error")
    response = record.get("response") or {}
    status = int(response.get("status_code") or (0 if error else 200))
    body = response.get("body")
    if error:
        message = error.get("message") if isinstance(error, dict) else str(error)
        return custom_id, LLMRequestError("batch_error", f"batch {batch_id}: {message}", line)
    if status != 200:
        detail = body.get("error", {}).get("message") if isinstance(body, dict) else None
        return custom_id, LLMRequestError(
            f"http_{status}", f"HTTP {status} in batch {batch_id}: {detail or 'no detail'}", line
        )
    if not isinstance(body, dict):
        return custom_id, LLMRequestError(
            "malformed_response", "the batch reply body is not a chat completion", line
        )
    return custom_id, body
