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

What a request asks is set here from the settings: its reply-token budget by prompt kind
(`LLMSettings.budget`), and for a prompt with a reply schema the `response_format` when
structured outputs are on (`llm.structured_output`; "auto" probes the endpoint once and
remembers the answer in the request cache). Replies of reasoning models are split into
thinking and answer (`reasoning`); only the answer reaches a generator.

`llm.backend: batch` sends the requests of each `complete_many` call as one Batch API job
(`batch`) instead of one HTTP request each; the replies go through the same cache, checks
and accounting, at batch prices.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
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
from mathsynth.errors import ConfigError
from mathsynth.generators.llm.accounting import cost_usd, split_evenly
from mathsynth.generators.llm.batch import BatchJobStore, BatchLine, BatchRunner
from mathsynth.generators.llm.cache import CachedSample, RequestCache
from mathsynth.generators.llm.chat import ChatRequest, Completion, Message, sample_key
from mathsynth.generators.llm.errors import LLMRequestError, LLMUnavailableError
from mathsynth.generators.llm.prompts import PromptLibrary
from mathsynth.generators.llm.reasoning import reasoning_share, split_reasoning
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
# The structured-output probe: a one-line JSON question with a schema. Only the status of the
# reply matters (a server without guided decoding answers 400 / 422), not its content.
PROBE_SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}},
    "required": ["ok"],
    "additionalProperties": False,
}
PROBE_PROMPT = 'Reply with the JSON object {"ok": true}.'
# Batch rounds per call: the first, then one for what it left (samples a server that ignores
# `n` did not give, requests that hit a transient error).
_BATCH_ROUNDS = 2

Result = list[Completion] | LLMRequestError


@dataclass(frozen=True, slots=True)
class _Choice:
    text: str
    finish_reason: str
    refusal: str | None
    tokens_in: int
    tokens_out: int
    reasoning: str | None = None
    reasoning_tokens: int | None = None  # the server's count; None when it gave none


@dataclass(slots=True)
class _Plan:
    """One request of a `complete_many` call: what is sent, and its samples' cache keys."""

    request: ChatRequest
    sampling: dict[str, Any]
    keys: list[str]


class LLMClient:
    """Batch chat completions against any OpenAI-compatible endpoint, with a request cache.

    `prompts` is the build's PromptLibrary (shipped templates, `llm.prompts_dir` overrides);
    generators render their requests from it. `batch_jobs` is where the batch backend keeps
    the ids of submitted batches so a rerun resumes them (the build passes its catalog; by
    default the catalog next to `cache_path`).

    Failure modes: constructing it without `base_url` and `model` raises LLMUnavailableError
    naming what to set; a bad prompt override or a budget for an unknown prompt kind raises
    ConfigError (PromptError). `complete_many` raises LLMUnavailableError when the endpoint is
    unreachable after bounded retries, rejects the key, does not know the model, refuses
    structured outputs with `llm.structured_output: on`, or (batch backend) has no batch API;
    every other failure is per request and comes back in that request's slot as an
    LLMRequestError.
    """

    def __init__(
        self,
        settings: LLMSettings,
        api_key: str | None,
        cache_path: Path | None,
        *,
        retry: RetryPolicy | None = None,
        batch_jobs: BatchJobStore | None = None,
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
        self.prompts = PromptLibrary(settings.prompts_dir)
        unknown = [
            k
            for k in settings.max_tokens
            if k not in ("default", "reasoning") and k not in self.prompts.kinds
        ]
        if unknown:
            raise ConfigError(
                f"llm.max_tokens: unknown prompt kind {unknown[0]!r} "
                f"(known: {', '.join(self.prompts.kinds)})"
            )
        if settings.backend == "batch" and batch_jobs is None and cache_path is not None:
            from mathsynth.storage.catalog import Catalog

            batch_jobs = Catalog(Path(cache_path).parent)
        self._batch_jobs = batch_jobs
        self._api_key = SecretStr(api_key or _NO_KEY)
        self._cache = RequestCache(cache_path) if cache_path is not None else None
        self._rng = random.Random()
        self._n_supported = True
        self._structured: bool | None = None
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
        self._batch = BatchRunner(
            self._openai, self.settings, self._batch_jobs, self.base_url, self.stats, self.retry
        )

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LLMClient(base_url={self.base_url!r}, model={self.model!r})"

    def complete_many(self, requests: Sequence[ChatRequest]) -> list[Result]:
        """Complete every request concurrently; results are in input order.

        Each slot holds the request's usable samples (cached ones first, then fresh ones; a
        sample that came back truncated, all thinking, empty or refused is dropped and counted
        in `stats["samples_dropped"]`), or an LLMRequestError carrying the raw reply when no
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

    # -- one call --------------------------------------------------------------------------------

    async def _complete_many(self, requests: list[ChatRequest]) -> list[Result]:
        structured = await self._use_structured(requests)
        plans = [self._plan(req, structured) for req in requests]
        all_keys = [k for plan in plans for k in plan.keys]
        cached = self._cache.get_many(all_keys) if self._cache is not None else {}
        self.stats["cache_hits"] += sum(1 for k in all_keys if k in cached)
        missing = [[k for k in plan.keys if k not in cached] for plan in plans]
        # The same request twice in one call (two tasks sending one prompt) is asked once;
        # the later ones get its samples as cached (they cost nothing more).
        first: dict[tuple[str, ...], int] = {}
        for i, todo in enumerate(missing):
            if todo:
                first.setdefault(tuple(todo), i)
        asking = sorted(first.values())
        if asking:
            await self._check_endpoint()
        fetched: dict[int, tuple[list[CachedSample], LLMRequestError | None]] = {}
        try:
            if self.settings.backend == "batch":
                got = await self._fetch_batch(
                    [plans[i] for i in asking], [missing[i] for i in asking]
                )
                fetched = dict(zip(asking, got, strict=True))
            else:
                async with asyncio.TaskGroup() as group:
                    tasks = {
                        i: group.create_task(
                            self._fetch(plans[i].request.messages, plans[i].sampling, missing[i])
                        )
                        for i in asking
                    }
                fetched = {i: task.result() for i, task in tasks.items()}
        except* LLMUnavailableError as group_error:
            # Every request would fail the same way: report it once, as the build's error.
            raise group_error.exceptions[0] from None
        finally:
            self._flush()
        results: list[Result] = []
        for i, plan in enumerate(plans):
            source = first.get(tuple(missing[i])) if missing[i] else None
            fresh, error = fetched[source] if source is not None else ([], None)
            results.append(self._assemble(plan, cached, fresh, error, repeated=source != i))
        return results

    def _plan(self, req: ChatRequest, structured: bool) -> _Plan:
        budget = req.max_tokens if req.max_tokens is not None else self.settings.budget(req.purpose)
        sampling = req.sampling(self.settings.temperature, budget)
        if structured and req.response_schema is not None:
            sampling["response_format"] = response_format(req.purpose, req.response_schema)
        keys = [
            sample_key(self.model, req.messages, sampling, req.first_sample + i, req.prompt_hash)
            for i in range(req.n)
        ]
        return _Plan(req, sampling, keys)

    def _assemble(
        self,
        plan: _Plan,
        cached: dict[str, CachedSample],
        fresh: list[CachedSample],
        error: LLMRequestError | None,
        *,
        repeated: bool = False,
    ) -> Result:
        """The request's result from its cached and freshly answered samples (`repeated`:
        answered for an identical request of the same call, so they count as cached)."""
        samples = [(cached[k], True) for k in plan.keys if k in cached]
        samples.extend((s, repeated) for s in fresh)
        completions: list[Completion] = []
        first_bad: LLMRequestError | None = None
        for sample, was_cached in samples:
            outcome = self._to_completion(plan.request, sample, was_cached)
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
        return self._store(keys, choices, batch=False), error

    async def _fetch_batch(
        self, plans: list[_Plan], missing: list[list[str]]
    ) -> list[tuple[list[CachedSample], LLMRequestError | None]]:
        """The missing samples of every request through the Batch API: one line per request
        asking for all its missing samples, then a second round for what the first left."""
        fresh: list[list[CachedSample]] = [[] for _ in plans]
        errors: list[LLMRequestError | None] = [None for _ in plans]
        todo = [list(keys) for keys in missing]
        for round_ in range(_BATCH_ROUNDS):
            lines: list[BatchLine] = []
            owners: dict[str, list[tuple[int, list[str]]]] = {}
            for i, keys in enumerate(todo):
                if not keys:
                    continue
                groups = [keys] if round_ == 0 and self._n_supported else [[k] for k in keys]
                for group in groups:
                    # Batch APIs want unique custom ids; a line asks for exactly these samples.
                    custom_id = group[0] if len(group) == 1 else _group_id(group)
                    if custom_id not in owners:
                        body = {"model": self.model, "messages": plans[i].request.messages}
                        body.update(plans[i].sampling)
                        if len(group) > 1:
                            body["n"] = len(group)
                        lines.append(BatchLine(custom_id, body))
                    owners.setdefault(custom_id, []).append((i, group))
            if not lines:
                break
            outcomes = await self._batch.run(lines)
            todo = [[] for _ in plans]
            stored: dict[str, list[CachedSample]] = {}
            for custom_id, (i, group) in (
                (cid, owner) for cid, owned in owners.items() for owner in owned
            ):
                if custom_id in stored:  # a second request with this very line: no new cost
                    fresh[i].extend(stored[custom_id])
                    continue
                outcome = outcomes[custom_id]
                parsed = (
                    outcome
                    if isinstance(outcome, LLMRequestError)
                    else _parse_completion(json.dumps(outcome))
                )
                if isinstance(parsed, LLMRequestError):
                    errors[i] = errors[i] or parsed
                    if _transient(parsed.reason):
                        todo[i].extend(group)
                    continue
                answered = parsed[: len(group)]
                stored[custom_id] = self._store(group, answered, batch=True)
                fresh[i].extend(stored[custom_id])
                if len(answered) < len(group):
                    if self._n_supported:
                        log.info("the server ignores n>1 in batches; asking per sample")
                        self._n_supported = False
                    todo[i].extend(group[len(answered) :])
            self._flush()
            if round_ + 1 < _BATCH_ROUNDS and any(todo):
                self.stats["retries"] += sum(1 for keys in todo if keys)
        return list(zip(fresh, errors, strict=True))

    def _store(self, keys: list[str], choices: list[_Choice], *, batch: bool) -> list[CachedSample]:
        """Cache entries for freshly answered samples (saved in groups, see _FLUSH_EVERY)."""
        samples = []
        for key, c in zip(keys, choices, strict=False):
            split = split_reasoning(c.text, c.reasoning, self.settings.think_tags)
            thinking = c.reasoning_tokens
            if thinking is None:
                thinking = reasoning_share(c.tokens_out, split)
            samples.append(
                CachedSample(
                    key=key,
                    model=self.model,
                    text=c.text,
                    finish_reason=c.finish_reason,
                    refusal=c.refusal,
                    tokens_in=c.tokens_in,
                    tokens_out=c.tokens_out,
                    cost_usd=cost_usd(
                        self.settings.prices, self.model, c.tokens_in, c.tokens_out, batch=batch
                    ),
                    reasoning=c.reasoning,
                    reasoning_tokens=thinking,
                )
            )
            if split.thought:
                self.stats["replies_with_reasoning"] += 1
        for s in samples:
            self.stats["tokens_in"] += s.tokens_in
            self.stats["tokens_out"] += s.tokens_out
            self.stats["reasoning_tokens"] += s.reasoning_tokens
            self.stats["cost_usd_micros"] += round(s.cost_usd * 1_000_000)
        self._unsaved.extend(samples)
        if len(self._unsaved) >= _FLUSH_EVERY:
            self._flush()
        return samples

    def _flush(self) -> None:
        if self._cache is not None and self._unsaved:
            self._cache.put_many(self._unsaved)
        self._unsaved = []

    def _to_completion(
        self, req: ChatRequest, s: CachedSample, cached: bool
    ) -> Completion | LLMRequestError:
        split = split_reasoning(s.text, s.reasoning, self.settings.think_tags)
        if s.refusal:
            return LLMRequestError("refused", f"the model refused: {s.refusal[:200]}", s.refusal)
        if s.finish_reason == "content_filter":
            return LLMRequestError("refused", "the reply was withheld by a content filter", s.text)
        if not split.answer and split.thought:
            where = "inside its thinking" if split.unterminated else "right after its thinking"
            hint = (
                "raise llm.max_tokens.reasoning"
                if self.settings.reasoning
                else "set llm.reasoning: true (adds llm.max_tokens.reasoning tokens)"
            )
            return LLMRequestError(
                "truncated_reasoning",
                f"the reply ended {where} with no answer ({s.reasoning_tokens} reasoning "
                f"tokens of {s.tokens_out}): {hint}",
                split.reasoning,
            )
        if s.finish_reason == "length":
            return LLMRequestError(
                "truncated", f"the reply hit max_tokens ({s.tokens_out} tokens)", split.answer
            )
        if not split.answer:
            return LLMRequestError("empty", "the reply has no content", s.text)
        return Completion(
            text=split.answer,
            finish_reason=s.finish_reason,
            tokens_in=s.tokens_in,
            tokens_out=s.tokens_out,
            cost_usd=s.cost_usd,
            cached=cached,
            model=s.model,
            request_hash=s.key,
            reasoning_tokens=s.reasoning_tokens,
            reasoning=split.reasoning if self.settings.keep_reasoning else None,
            prompt=req.purpose if req.prompt_hash else "",
            prompt_hash=req.prompt_hash,
        )

    # -- structured outputs -----------------------------------------------------------------

    async def _use_structured(self, requests: list[ChatRequest]) -> bool:
        """Whether this call sends reply schemas as `response_format` (see module doc)."""
        mode = self.settings.structured_output
        if mode == "off" or not any(r.response_schema is not None for r in requests):
            return False
        if self._structured is None:
            memo_key = f"structured_output:{self.base_url}|{self.model}"
            memo = self._cache.get_meta(memo_key) if self._cache is not None else None
            if memo is not None:
                self._structured = memo == "yes"
            else:
                await self._check_endpoint()
                async with self._check_lock:
                    if self._structured is None:
                        supported = await self._probe_structured()
                        if supported is not None and self._cache is not None:
                            self._cache.set_meta(memo_key, "yes" if supported else "no")
                        self._structured = bool(supported)
        if mode == "on" and not self._structured:
            raise LLMUnavailableError(
                f"{self.base_url} does not accept response_format with a JSON schema "
                f"(llm.structured_output: on): set it to auto or off"
            )
        return self._structured

    async def _probe_structured(self) -> bool | None:
        """True / False when the server accepts / refuses a JSON-schema response_format;
        None when it could not tell (timeout, 5xx): plain requests for this client's life."""
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": PROBE_PROMPT}],
            "max_tokens": 16,
            "temperature": 0.0,
            "response_format": response_format("probe", PROBE_SCHEMA),
        }
        self.stats["requests"] += 1
        self.stats["structured_probe"] += 1
        try:
            await self._openai.post("/chat/completions", body=body, cast_to=_http.Response)
        except openai.APIStatusError as exc:
            self._raise_if_fatal(exc)
            if exc.status_code in (400, 415, 422, 501):
                log.info(
                    "%s refuses structured outputs (HTTP %s): JSON prompts go without a schema",
                    self.base_url,
                    exc.status_code,
                )
                return False
            log.warning("structured-output probe failed (HTTP %s); not using it", exc.status_code)
            return None
        except (openai.APITimeoutError, openai.APIConnectionError) as exc:
            log.warning("structured-output probe failed (%s); not using it", exc)
            return None
        log.info("%s accepts structured outputs: JSON prompts send their schema", self.base_url)
        return True

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
            # vLLM / SGLang reasoning parsers and DeepSeek send `reasoning_content`; OpenRouter,
            # Ollama and newer vLLM `reasoning`. Kept apart from the answer, never parsed.
            thinking = message.get("reasoning_content") or message.get("reasoning")
            choices.append(
                (
                    str(message.get("content") or ""),
                    str(choice.get("finish_reason") or "stop"),
                    message.get("refusal") or None,
                    str(thinking) if thinking else None,
                )
            )
        tokens_in = int(usage.get("prompt_tokens") or 0)
        tokens_out = int(usage.get("completion_tokens") or 0)
        details = usage.get("completion_tokens_details") or {}
        reported = details.get("reasoning_tokens") if isinstance(details, dict) else None
        reasoning_total = int(reported) if reported is not None else None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        return LLMRequestError("malformed_response", f"not a chat completion ({exc})", body)
    if not choices:
        return LLMRequestError("no_choices", "the server sent no choices", body)
    ins = split_evenly(tokens_in, len(choices))
    outs = split_evenly(tokens_out, len(choices))
    thinks: list[int | None] = (
        list(split_evenly(reasoning_total, len(choices)))
        if reasoning_total is not None
        else [None] * len(choices)
    )
    return [
        _Choice(text, finish, refusal, i, o, thinking, t)
        for (text, finish, refusal, thinking), i, o, t in zip(
            choices, ins, outs, thinks, strict=True
        )
    ]


def response_format(kind: str, schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAI `response_format` for a reply schema (vLLM, SGLang and llama.cpp's server
    read the same). `strict` only when the schema meets OpenAI's strict rules (every object
    closed, every property required); otherwise the server's guided decoding still applies."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", kind)[:64] or "reply"
    return {
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": _strict_ok(schema)},
    }


def _strict_ok(schema: Any) -> bool:
    if isinstance(schema, list):
        return all(_strict_ok(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or []) != set(properties):
            return False
    return all(_strict_ok(v) for k, v in schema.items() if k not in ("required", "enum", "const"))


def _group_id(keys: list[str]) -> str:
    return hashlib.sha256("|".join(keys).encode()).hexdigest()


def _transient(reason: str) -> bool:
    """Per-request batch failures worth one more round."""
    if reason.startswith("http_"):
        status = int(reason.removeprefix("http_") or 0)
        return status == 429 or status >= 500 or status in (408, 409)
    return reason in ("malformed_response", "batch_error", "timeout", "connection")


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
