"""Batches run by another process than the build's (a Dask worker): a process-local cache.

Each worker process opens a build's resources (sandbox, LLM client with its request cache,
answer checker, Lean backend) once, on its first batch, and reuses them for every later
batch of that dataset, and of later builds of the same config (a resumed build): the cache
is keyed by the config's content hash and the output directory. What differs per build
run, the seeds and the methods' planning state (MathScale's concept graph), comes with each
batch as a `BuildPlan`, which the orchestrator sends to every worker once.

The worker only runs `execute_batch` (stages + shards); the build's own process commits
each batch to the catalog, so `catalog.duckdb` has one writer. The output directory must
therefore be one every worker can write (the same machine, or a shared filesystem).
"""

from __future__ import annotations

import atexit
import threading
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

from mathsynth.config import BuildConfig
from mathsynth.executor.local import (
    Batch,
    BatchResult,
    BatchSummary,
    BuildContext,
    execute_batch,
    open_context,
)
from mathsynth.executor.timing import unwrap
from mathsynth.seeds import Seed


class BuildPlan:
    """What a worker needs of a build's planning: its seeds and the methods' state.

    A plain class, not a dataclass, so that orchestrators that walk task parameters
    (Prefect) do not descend into thousands of seeds.
    """

    __slots__ = ("run_id", "seeds", "state")

    def __init__(self, run_id: str, seeds: list[Seed], state: dict[str, Any]) -> None:
        self.run_id = run_id
        self.seeds = seeds
        self.state = state


def context_key(config: BuildConfig) -> str:
    """The cache key of a dataset's resources in a worker process."""
    return f"{config.content_hash()}:{Path(config.out_dir).resolve()}"


_contexts: dict[str, BuildContext] = {}
# How many times this process opened resources per key: 1 while the cache works.
_opened: Counter[str] = Counter()
_lock = threading.Lock()


def worker_context(config: BuildConfig) -> BuildContext:
    """This process's resources for `config`'s dataset, opened on first use.

    Failure modes: whatever `open_context` raises (sandbox start, unreachable Lean); a
    failed open is not cached, so the next batch tries again.
    """
    key = context_key(config)
    with _lock:
        ctx = _contexts.get(key)
        if ctx is None:
            ctx = open_context(config, run_id="worker")
            _contexts[key] = ctx
            _opened[key] += 1
        return ctx


_plans: dict[str, BuildPlan] = {}


def install_plan(plan: BuildPlan) -> None:
    """Keep a build run's plan in this process until `drop_plan` (the orchestrator sends it
    to each worker once, e.g. as a Dask worker plugin)."""
    with _lock:
        _plans[plan.run_id] = plan


def drop_plan(run_id: str) -> None:
    with _lock:
        _plans.pop(run_id, None)


class PlanMissingError(RuntimeError):
    """A batch arrived at a worker that never received its build's plan."""


def execute_remote(
    config: BuildConfig, run_id: str, batch: Batch, done: frozenset[int] | set[int]
) -> BatchResult:
    """Run one batch of build run `run_id` in this process with the cached resources; the
    caller commits it.

    Failure modes: PlanMissingError when the run's plan was not installed here.
    """
    if batch.number in done:
        return BatchResult(BatchSummary(batch.number, batch.generator, skipped=True))
    with _lock:
        plan = _plans.get(run_id)
    if plan is None:
        raise PlanMissingError(f"this worker has no plan for build run {run_id}")
    shared = worker_context(config)
    # A view with this run's seeds and state; the resources are the shared ones.
    ctx = replace(shared, seeds=plan.seeds, state=plan.state, run_id=plan.run_id)
    return execute_batch(ctx, batch)


def llm_counters(key: str) -> dict[str, int]:
    """The LLM client counters of this process's context for `key` (empty if none)."""
    ctx = _contexts.get(key)
    if ctx is None or ctx.llm is None:
        return {}
    return dict(unwrap(ctx.llm).stats)


def open_counts() -> dict[str, int]:
    """How often this process opened resources, per key (1 each while they are reused)."""
    with _lock:
        return dict(_opened)


def close_contexts(key: str | None = None) -> int:
    """Close this process's contexts (all, or the one for `key`); returns how many."""
    with _lock:
        keys = [k for k in _contexts if key is None or k == key]
        closing = [_contexts.pop(k) for k in keys]
    for ctx in closing:
        ctx.close()
    return len(closing)


atexit.register(close_contexts)
