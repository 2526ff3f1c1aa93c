"""The Kimina Lean Server backend (project-numina/kimina-lean-server), over HTTP.

Request, as the server's backward-compatible endpoint takes it (app/routers/backward.py and
app/schemas.py `VerifyRequestBody`):
    POST {url}/verify
    {"codes": [{"custom_id": "0", "proof": "<header>\\n\\n<code>"}], "timeout": 60,
     "infotree_type": null, "disable_cache": false}
Response (`VerifyResponse`):
    {"results": [{"custom_id": "0", "error": null | "...",
                  "response": {"env": 0, "messages": [...], "sorries": [...], "time": 0.1}}]}
The server splits the imports off each snippet and keeps REPLs per header, so sending the full
header with every item costs nothing after the first. `GET {url}/health` answers
`{"status": "ok"}` (app/routers/health.py).

A per-item `error` that reports a timeout counts as `failed` (as in the REPL backend); any other
per-item error, an HTTP failure or an unreadable response marks the items `unchecked`.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any

from mathsynth.verifiers.lean.acceptance import judge
from mathsynth.verifiers.lean.backend import HEADER, LeanItem, LeanResult, unchecked

logger = logging.getLogger("mathsynth.lean")

_RETRY_STATUS = {429, 502, 503, 504}


class KiminaBackend:
    """Sends items in batches of `batch_size` to one Kimina Lean Server."""

    name = "kimina"

    def __init__(
        self,
        url: str,
        *,
        header: str = HEADER,
        timeout_s: float = 60.0,
        batch_size: int = 32,
        retries: int = 2,
        backoff_s: float = 1.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.header = header
        self.timeout_s = timeout_s
        self.batch_size = batch_size
        self.retries = retries
        self.backoff_s = backoff_s
        self._logged: set[str] = set()

    def check(self, items: list[LeanItem]) -> list[LeanResult]:
        results: list[LeanResult] = []
        for start in range(0, len(items), self.batch_size):
            results.extend(self._check_batch(items[start : start + self.batch_size]))
        return results

    def close(self) -> None:
        """Nothing to release: every request opens and closes its own connection."""

    def __enter__(self) -> KiminaBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_batch(self, batch: list[LeanItem]) -> list[LeanResult]:
        # Positions as custom ids: unique even when two items share an id.
        body = {
            "codes": [
                {"custom_id": str(i), "proof": self._snippet(item)} for i, item in enumerate(batch)
            ],
            "timeout": max(1, round(self.timeout_s)),
            "infotree_type": None,
            "disable_cache": False,
        }
        try:
            reply = self._post("/verify", body, timeout_s=self.timeout_s * len(batch) + 30)
            by_id = _results_by_id(reply)
        except _TransportError as exc:
            self._log_once(str(exc))
            return [unchecked(item, str(exc)) for item in batch]
        return [self._result(item, by_id.get(str(i))) for i, item in enumerate(batch)]

    def _snippet(self, item: LeanItem) -> str:
        return f"{self.header}\n\n{item.code}" if self.header.strip() else item.code

    def _result(self, item: LeanItem, entry: dict[str, Any] | None) -> LeanResult:
        if entry is None:
            return unchecked(item, "kimina server returned no result for this item")
        error = entry.get("error")
        if error:
            if "timed out" in str(error):
                return LeanResult(item.id, "failed", [f"error: {error}"])
            return unchecked(item, f"kimina server error: {error}")
        response = entry.get("response")
        if not isinstance(response, dict):
            return unchecked(item, "kimina server result has neither error nor response")
        return judge(item, response)

    def _post(self, path: str, body: dict[str, Any], *, timeout_s: float) -> Any:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(
                self.url + path,
                data=data,
                headers={"Content-Type": "application/json"},
                method="POST",
            )
            try:
                with urllib.request.urlopen(request, timeout=timeout_s) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                if exc.code in _RETRY_STATUS and attempt < self.retries:
                    time.sleep(self.backoff_s * 2**attempt)
                    continue
                raise _TransportError(
                    f"kimina server {self.url} answered HTTP {exc.code}"
                ) from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise _TransportError(f"kimina server {self.url} unreachable: {reason}") from None
            try:
                return json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise _TransportError(f"kimina server {self.url} sent non-JSON") from None
        raise AssertionError("unreachable")  # the loop either returns or raises

    def _log_once(self, reason: str) -> None:
        if reason not in self._logged:
            self._logged.add(reason)
            logger.error("lean check failed, rows marked unchecked: %s", reason)


class _TransportError(Exception):
    """Internal: the request as a whole failed; turned into `unchecked` results."""


def _results_by_id(reply: Any) -> dict[str, dict[str, Any]]:
    results = reply.get("results") if isinstance(reply, dict) else None
    if not isinstance(results, list):
        raise _TransportError("kimina server response has no 'results' list")
    return {
        str(entry.get("custom_id")): entry
        for entry in results
        if isinstance(entry, dict) and "custom_id" in entry
    }


def probe_kimina(url: str, timeout_s: float = 5.0) -> tuple[bool, str]:
    """(reachable, detail) from `GET {url}/health`."""
    target = url.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(target, timeout=timeout_s) as response:
            body = response.read(4096).decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return False, f"{target} answered HTTP {exc.code}"
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        return False, f"{target} unreachable: {getattr(exc, 'reason', exc)}"
    return True, f"{target} answered {body.strip()[:80]}"
