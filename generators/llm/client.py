"""`LLMClient`: a synchronous, thread-safe batch API over `openai.AsyncOpenAI`.

Generators are synchronous stages running in Prefect task threads; the client owns a private
event loop in a background thread, and `complete_many` hands it a batch and waits. All
requests of all callers share one semaphore, so `settings.concurrency` bounds HTTP requests
in flight (not records, not batches).

Transport: the SDK over its aiohttp transport (`DefaultAioHttpClient`), reading the raw body
(`with_raw_response`) and parsing the JSON ourselves. Measured by bench/llm_throughput.py this
costs far less CPU per request than the default httpx transport plus pydantic models, and it
lets a malformed body become a recorded failure instead of an exception deep in the SDK. The
SDK's own retries are off: ours honour Retry-After and know which failures are build-fatal.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

try:  # the SDK's HTTP library: httpx2 from openai 3, httpx before
    import httpx2 as _http
except ImportError:  # pragma: no cover - depends on the installed SDK generation
    import httpx as _http  # type: ignore[no-redef]
from openai import AsyncOpenAI, DefaultAioHttpClient
from pydantic import SecretStr

from mathsynth.config import LLMSettings
from mathsynth.generators.llm.accounting import cost_usd, split_evenly
from mathsynth.generators.llm.cache import CachedSample, RequestCache
from mathsynth.generators.llm.chat import ChatRequest, Completion, Message, sample_key
from mathsynth.generators.llm.errors import LLMRequestError, LLMUnavailableError
from mathsynth.generators.llm.retry import RetryPolicy

log = logging.getLogger("mathsynth.llm")

# Servers such as llama.cpp need no key, but the SDK insists on one; vLLM documents this value.
_NO_KEY = "EMPTY"
# The endpoint check at startup gives up sooner than a request: a wrong URL should fail fast.
_PREFLIGHT_RETRIES = 2
_PREFLIGHT_TIMEOUT_S = 10.0
# Answered samples are written to the cache in groups of this many (and at the end of every
# batch): one SQLite commit per reply costs more CPU than the rest of the request path.
# A crash loses at most this many answers, which a resume then pays for again.
_FLUSH_EVERY = 64

Result = list[Completion] | LLMRequestError


@dataclass(frozen=True, slots=True)
class _Choice:
    text: str
    finish_reason: str
    refusal: str | None
    tokens_in: int
    tokens_out: int


class LLMClient:
    """Batch chat completions against any OpenAI-compatible endpoint, with a request cache.

    Failure modes: constructing it without `base_url` and `model` raises LLMUnavailableError
    naming what to set. `complete_many` raises LLMUnavailableError when the endpoint is
    unreachable after bounded retries, rejects the key, or does not know the model; every other
    failure is per request and comes back in that request's slot as an LLMRequestError.
    """

    def __init__(
        self,
        settings: LLMSettings,
        api_key: str | None,
        cache_path: Path | None,
        *,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not settings.configured:
            missing = " and ".join(
                flag
                for flag, value in (
                    ("--llm-base-url", settings.base_url),
                    ("--llm-model", settings.model),
                )
                if not value
            )
            raise LLMUnavailableError(
                f"the selected generators need an LLM: set {missing} "
                "(or llm.base_url / llm.model in the config, MATHSYNTH_LLM__BASE_URL / "
                "MATHSYNTH_LLM__MODEL in the environment)"
            )
        self.settings = settings
        self.model: str = settings.model  # type: ignore[assignment]  # checked by .configured
        self.base_url: str = settings.base_url.rstrip("/")  # type: ignore[union-attr]
        self.retry = retry or RetryPolicy()
        self.stats: Counter[str] = Counter()
        self._api_key = SecretStr(api_key or _NO_KEY)
        self._cache = RequestCache(cache_path) if cache_path is not None else None
        self._rng = random.Random()
        self._n_supported = True
        self._checked = False
        self._available: list[str] | None = None
        self._closed = False
        self._unsaved: list[CachedSample] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="mathsynth-llm", daemon=True
        )
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result()

    async def _start(self) -> None:
        # The aiohttp session and the semaphore must be created on the loop that uses them.
        self._openai = AsyncOpenAI(
            base_url=self.base_url,
            api_key=self._api_key.get_secret_value(),
            timeout=self.settings.timeout_s,
            max_retries=0,
            http_client=DefaultAioHttpClient(timeout=self.settings.timeout_s),
        )
        self._semaphore = asyncio.Semaphore(self.settings.concurrency)
        self._check_lock = asyncio.Lock()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LLMClient(base_url={self.base_url!r}, model={self.model!r})"

    def complete_many(self, requests: Sequence[ChatRequest]) -> list[Result]:
        """Complete every request concurrently; results are in input order.

        Each slot holds the request's usable samples (cached ones first, then fresh ones; a
        sample that came back truncated, empty or refused is dropped and counted in
        `stats["samples_dropped"]`), or an LLMRequestError carrying the raw reply when no
        sample is usable. Call from any thread except the client's own loop thread.
        """
        if self._closed:
            raise RuntimeError("LLMClient is closed")
        future = asyncio.run_coroutine_threadsafe(self._complete_many(list(requests)), self._loop)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            asyncio.run_coroutine_threadsafe(self._openai.close(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
            if self._cache is not None:
                self._cache.close()

    # -- batch ---------------------------------------------------------------------------------

    async def _complete_many(self, requests: list[ChatRequest]) -> list[Result]:
        plans = []
        for req in requests:
            sampling = req.sampling(self.settings.temperature, self.settings.max_tokens)
            keys = [
                sample_key(self.model, req.messages, sampling, req.first_sample + i)
                for i in range(req.n)
            ]
            plans.append((req, sampling, keys))
        all_keys = [k for _, _, keys in plans for k in keys]
        cached = self._cache.get_many(all_keys) if self._cache is not None else {}
        self.stats["cache_hits"] += sum(1 for k in all_keys if k in cached)
        if len(cached) < len(set(all_keys)):
            await self._check_endpoint()
        try:
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(self._complete_one(req, sampling, keys, cached))
                    for req, sampling, keys in plans
                ]
        except* LLMUnavailableError as group_error:
            # Every request would fail the same way: report it once, as the build's error.
            raise group_error.exceptions[0] from None
        finally:
            self._flush()
        return [t.result() for t in tasks]

    async def _complete_one(
        self,
        req: ChatRequest,
        sampling: dict[str, Any],
        keys: list[str],
        cached: dict[str, CachedSample],
    ) -> Result:
        samples: list[tuple[CachedSample, bool]] = [(cached[k], True) for k in keys if k in cached]
        missing = [k for k in keys if k not in cached]
        error: LLMRequestError | None = None
        if missing:
            fresh, error = await self._fetch(req.messages, sampling, missing)
            samples.extend((s, False) for s in fresh)
        completions: list[Completion] = []
        first_bad: LLMRequestError | None = None
        for sample, was_cached in samples:
            outcome = self._to_completion(sample, was_cached)
            if isinstance(outcome, Completion):
                completions.append(outcome)
            else:
                self.stats["samples_dropped"] += 1
                self.stats[f"dropped_{outcome.reason}"] += 1
                first_bad = first_bad or outcome
        if completions:
            return completions
        failure = first_bad or error or LLMRequestError("no_choices", "the server sent no choices")
        self.stats[f"failed_{failure.reason}"] += 1
        return failure

    async def _fetch(
        self, messages: list[Message], sampling: dict[str, Any], keys: list[str]
    ) -> tuple[list[CachedSample], LLMRequestError | None]:
        """Ask for one sample per key; store what comes back. Servers that ignore `n` get
        the remaining samples as separate single requests (remembered for the client's life)."""
        choices: list[_Choice] = []
        error: LLMRequestError | None = None
        if self._n_supported or len(keys) == 1:
            got = await self._call(messages, sampling, len(keys))
            if isinstance(got, LLMRequestError):
                return [], got
            choices.extend(got[: len(keys)])
            if 0 < len(choices) < len(keys) and self._n_supported:
                log.info("the server ignores n>1; sending one request per sample instead")
                self._n_supported = False
        remaining = len(keys) - len(choices)
        if remaining > 0:
            singles = await asyncio.gather(
                *(self._call(messages, sampling, 1) for _ in range(remaining))
            )
            for got in singles:
                if isinstance(got, LLMRequestError):
                    error = error or got
                else:
                    choices.extend(got[:1])
        samples = [
            CachedSample(
                key=key,
                model=self.model,
                text=c.text,
                finish_reason=c.finish_reason,
                refusal=c.refusal,
                tokens_in=c.tokens_in,
                tokens_out=c.tokens_out,
                cost_usd=cost_usd(self.settings.prices, self.model, c.tokens_in, c.tokens_out),
            )
            for key, c in zip(keys, choices, strict=False)
        ]
        for s in samples:
            self.stats["tokens_in"] += s.tokens_in
            self.stats["tokens_out"] += s.tokens_out
            self.stats["cost_usd_micros"] += round(s.cost_usd * 1_000_000)
        self._unsaved.extend(samples)
        if len(self._unsaved) >= _FLUSH_EVERY:
            self._flush()
        return samples, error

    def _flush(self) -> None:
        if self._cache is not None and self._unsaved:
            self._cache.put_many(self._unsaved)
        self._unsaved = []

    def _to_completion(self, s: CachedSample, cached: bool) -> Completion | LLMRequestError:
        if s.refusal:
            return LLMRequestError("refused", f"the model refused: {s.refusal[:200]}", s.refusal)
        if s.finish_reason == "content_filter":
            return LLMRequestError("refused", "the reply was withheld by a content filter", s.text)
        if s.finish_reason == "length":
            return LLMRequestError(
                "truncated", f"the reply hit max_tokens ({s.tokens_out} tokens)", s.text
            )
        if not s.text.strip():
            return LLMRequestError("empty", "the reply has no content", s.text)
        return Completion(
            text=s.text,
            finish_reason=s.finish_reason,
            tokens_in=s.tokens_in,
            tokens_out=s.tokens_out,
            cost_usd=s.cost_usd,
            cached=cached,
            model=s.model,
            request_hash=s.key,
        )

    # -- one HTTP request, with retries ---------------------------------------------------------

    async def _call(
        self, messages: list[Message], sampling: dict[str, Any], n: int
    ) -> list[_Choice] | LLMRequestError:
        params: dict[str, Any] = {"model": self.model, "messages": messages, **sampling}
        if n > 1:
            params["n"] = n
        failure: LLMRequestError | None = None
        for attempt in range(self.settings.max_retries + 1):
            headers: dict[str, str] | None = None
            try:
                async with self._semaphore:
                    self.stats["requests"] += 1
                    # `post` rather than `chat.completions.create`: the typed method walks
                    # every message through the SDK's TypedDict transformer, which alone costs
                    # more CPU than the rest of a request (see bench/llm_throughput.py).
                    response = await self._openai.post(
                        "/chat/completions", body=params, cast_to=_http.Response
                    )
                    body = response.text
            except openai.APITimeoutError:
                failure = LLMRequestError("timeout", f"no reply within {self.settings.timeout_s}s")
            except openai.APIConnectionError as exc:
                failure = LLMRequestError("connection", _connection_detail(exc))
            except openai.APIStatusError as exc:
                status = exc.status_code
                self._raise_if_fatal(exc)
                failure = LLMRequestError(f"http_{status}", _status_detail(exc), exc.response.text)
                if not (status == 429 or status >= 500 or status in (408, 409)):
                    return failure  # a 400 (prompt too long, bad parameter) will not improve
                headers = dict(exc.response.headers)
            else:
                parsed = _parse_completion(body)
                if not isinstance(parsed, LLMRequestError):
                    return parsed
                failure = parsed
            if attempt < self.settings.max_retries:
                delay = self.retry.delay(attempt, headers, self._rng)
                self.stats["retries"] += 1
                log.debug("retrying after %s in %.2fs", failure.reason, delay)
                await asyncio.sleep(delay)
        assert failure is not None  # the loop ran at least once and did not return
        if failure.reason == "connection":
            raise LLMUnavailableError(
                f"cannot reach the LLM endpoint {self.base_url} ({failure.detail}) after "
                f"{self.settings.max_retries + 1} attempts: check --llm-base-url"
            )
        return failure

    def _raise_if_fatal(self, exc: openai.APIStatusError) -> None:
        status = exc.status_code
        if status in (401, 403):
            raise LLMUnavailableError(
                f"the LLM endpoint {self.base_url} rejected the API key (HTTP {status}): "
                "set OPENAI_API_KEY or llm.api_key"
            )
        if status == 404:
            raise LLMUnavailableError(self._not_found_message(exc))

    def _not_found_message(self, exc: openai.APIStatusError) -> str:
        detail = _status_detail(exc)
        if self._available is not None and self.model not in self._available:
            shown = ", ".join(self._available[:10]) or "none"
            return f"unknown model {self.model!r} at {self.base_url} (served: {shown})"
        if exc.code == "model_not_found" or "model" in detail.lower():
            return f"unknown model {self.model!r} at {self.base_url}: {detail}"
        return (
            f"{self.base_url}/chat/completions does not exist (HTTP 404): check --llm-base-url "
            "(OpenAI-compatible servers usually end in /v1)"
        )

    async def _check_endpoint(self) -> None:
        """Once per client, before the first real request: is the endpoint there at all?

        Fails fast (a few short retries) with one line when nothing answers, or when the key
        is refused. Servers without `/models` pass; the served list, when there is one, only
        improves the unknown-model message (llama.cpp serves any name, so absence is no proof).
        """
        async with self._check_lock:
            if self._checked:
                return
            client = self._openai.with_options(
                timeout=min(self.settings.timeout_s, _PREFLIGHT_TIMEOUT_S)
            )
            for attempt in range(_PREFLIGHT_RETRIES + 1):
                try:
                    raw = await client.models.with_raw_response.list()
                    data = json.loads(raw.http_response.text).get("data", [])
                    self._available = [str(m.get("id")) for m in data if isinstance(m, dict)]
                    break
                except openai.APIConnectionError as exc:
                    if attempt == _PREFLIGHT_RETRIES:
                        raise LLMUnavailableError(
                            f"cannot reach the LLM endpoint {self.base_url} "
                            f"({_connection_detail(exc)}): check --llm-base-url"
                        ) from None
                    await asyncio.sleep(self.retry.backoff(attempt, self._rng))
                except openai.APIStatusError as exc:
                    if exc.status_code in (401, 403):
                        self._raise_if_fatal(exc)
                    break  # no /models here; requests will tell
                except (ValueError, AttributeError):
                    break  # a /models that is not JSON: not our business
            self._checked = True


def _parse_completion(body: str) -> list[_Choice] | LLMRequestError:
    """Choices of a chat completion body, tolerating missing optional fields."""
    try:
        data = json.loads(body)
        raw_choices = data["choices"]
        usage = data.get("usage") or {}
        choices = []
        for choice in raw_choices:
            message = choice.get("message") or {}
            choices.append(
                (
                    str(message.get("content") or ""),
                    str(choice.get("finish_reason") or "stop"),
                    message.get("refusal") or None,
                )
            )
        tokens_in = int(usage.get("prompt_tokens") or 0)
        tokens_out = int(usage.get("completion_tokens") or 0)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return LLMRequestError("malformed_response", f"not a chat completion ({exc})", body)
    if not choices:
        return LLMRequestError("no_choices", "the server sent no choices", body)
    ins = split_evenly(tokens_in, len(choices))
    outs = split_evenly(tokens_out, len(choices))
    return [
        _Choice(text, finish, refusal, i, o)
        for (text, finish, refusal), i, o in zip(choices, ins, outs, strict=True)
    ]


def _status_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("error")
        if isinstance(message, dict):
            message = message.get("message")
        if message:
            return f"HTTP {exc.status_code}: {str(message)[:300]}"
    return f"HTTP {exc.status_code}"


def _connection_detail(exc: openai.APIConnectionError) -> str:
    cause = exc.__cause__ or exc.__context__
    text = (str(cause) if cause is not None else "") or exc.message
    return text.splitlines()[0][:200] if text.strip() else "no reply"
