"""AnswerChecker: is a predicted answer equivalent to the gold answer?

A pair is first tried on the exact fast path in the calling process (`exact.py`); only pairs it
cannot decide go to math-verify in killable worker processes (`pool.py`). Pairs with the same
gold string go to the same worker, whose gold parse cache then serves them.
"""

from __future__ import annotations

import os
import threading
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Self

from mathsynth.verifiers.answers.exact import compare_numbers, format_fraction, read_number
from mathsynth.verifiers.answers.normalize import answer_core
from mathsynth.verifiers.answers.pool import AnswerWorker

VerdictName = Literal["correct", "incorrect", "error"]


@dataclass(frozen=True, slots=True)
class Verdict:
    """`correct` / `incorrect`, or `error` when the checker could not decide (unparseable
    gold, timeout, memory cap, math-verify exception). `detail` says how it was decided."""

    verdict: VerdictName
    detail: str

    @property
    def correct(self) -> bool:
        return self.verdict == "correct"


def fast_verdict(gold: str, pred: str) -> Verdict | None:
    """Decide a pair without math-verify when that is certain; None otherwise."""
    gold_core, pred_core = answer_core(gold), answer_core(pred)
    if not gold_core:
        return Verdict("error", "gold answer is empty")
    if not pred_core:
        return Verdict("incorrect", "prediction is empty")
    if gold_core == pred_core:
        return Verdict("correct", "identical after normalisation")
    g, p = read_number(gold_core), read_number(pred_core)
    if g is None or p is None:
        return None
    shown = f"{format_fraction(g.value)} {{}} {format_fraction(p.value)}"
    if compare_numbers(g, p):
        return Verdict("correct", "exact: " + shown.format("=="))
    return Verdict("incorrect", "exact: " + shown.format("!="))


class AnswerChecker:
    """Thread-safe answer equivalence checker. Use as a context manager (or call close()).

    timeout_s: hard wall-clock limit per math-verify pair; memory_mb: RLIMIT_AS per worker;
    workers: worker processes (default min(cpu count, 8)), started on the first pair that
    needs math-verify; batch_size: pairs per message to a worker.
    """

    def __init__(
        self,
        timeout_s: float = 2.0,
        *,
        workers: int | None = None,
        memory_mb: int = 1024,
        batch_size: int = 64,
    ) -> None:
        self.timeout_s = timeout_s
        self.memory_mb = memory_mb
        self.batch_size = batch_size
        self.n_workers = max(1, workers if workers is not None else min(os.cpu_count() or 1, 8))
        self._workers: list[AnswerWorker] = []
        self._locks = [threading.Lock() for _ in range(self.n_workers)]
        self._start_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self.fast_path_hits = 0
        self.worker_checks = 0

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def restarts(self) -> int:
        """Workers replaced after a timeout or crash since this checker started."""
        return sum(w.restarts for w in self._workers)

    def check(self, gold: str, pred: str) -> Verdict:
        """Verdict for one pair; `gold` is the reference (the comparison is asymmetric)."""
        return self.check_many([(gold, pred)])[0]

    def check_many(self, pairs: Sequence[tuple[str, str]]) -> list[Verdict]:
        """Verdicts in input order. Failure modes: AnswerWorkerError if workers cannot start."""
        verdicts: list[Verdict | None] = [fast_verdict(g, p) for g, p in pairs]
        pending = [i for i, v in enumerate(verdicts) if v is None]
        self.fast_path_hits += len(pairs) - len(pending)
        self.worker_checks += len(pending)
        if pending:
            self._start_workers()
            shards: list[list[int]] = [[] for _ in range(self.n_workers)]
            for i in pending:
                shards[zlib.crc32(pairs[i][0].encode()) % self.n_workers].append(i)
            assert self._executor is not None
            futures = [
                self._executor.submit(self._run_shard, w, [pairs[i] for i in shard])
                for w, shard in enumerate(shards)
                if shard
            ]
            results = iter(f.result() for f in futures)
            for shard in (s for s in shards if s):
                for i, (verdict, detail) in zip(shard, next(results), strict=True):
                    verdicts[i] = Verdict(verdict, detail)  # type: ignore[arg-type]
        return [v for v in verdicts if v is not None]

    def _start_workers(self) -> None:
        with self._start_lock:
            if not self._workers:
                self._workers = [AnswerWorker(self.memory_mb) for _ in range(self.n_workers)]
                self._executor = ThreadPoolExecutor(self.n_workers, "answer-worker")

    def _run_shard(self, index: int, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        with self._locks[index]:
            worker = self._workers[index]
            for start in range(0, len(pairs), self.batch_size):
                out.extend(worker.check(pairs[start : start + self.batch_size], self.timeout_s))
        return out

    def close(self) -> None:
        """Stop the worker processes. Safe to call twice."""
        with self._start_lock:
            for worker in self._workers:
                worker.close()
            self._workers = []
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None
