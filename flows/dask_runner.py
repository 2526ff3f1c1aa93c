"""`--runner dask`: a build's batches as Prefect tasks on a Dask cluster (prefect-dask).

Without `--dask-address` the build starts a local cluster (`runner.workers` processes) and
stops it at the end; with one, it uses that scheduler and leaves the cluster running, so the
workers keep their open resources for the next build. Each worker process opens the
dataset's sandbox, LLM client and answer checker once and reuses them
(`mathsynth.executor.workers`); the plan (seeds, concept graph) goes to every worker once,
scattered, not with every batch. Workers write shards; the build's process commits them to
the catalog, so the output directory must be reachable by every worker at the same path
(it is passed resolved to an absolute path).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin
from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.futures import PrefectFuture
from prefect_dask import DaskTaskRunner

from mathsynth.config import BuildConfig
from mathsynth.errors import ConfigError
from mathsynth.executor.local import (
    Batch,
    BatchResult,
    BatchSummary,
    BuildContext,
    batches_in_flight,
    commit_batch,
)
from mathsynth.executor.workers import (
    BuildPlan,
    context_key,
    drop_plan,
    execute_remote,
    install_plan,
)


class RemoteJob:
    """One batch for a worker: the config (with an absolute output dir), the batch, and the
    numbers of batches already finished. A plain class: Prefect does not walk into it."""

    __slots__ = ("batch", "config", "done")

    def __init__(self, config: BuildConfig, batch: Batch, done: frozenset[int]) -> None:
        self.config = config
        self.batch = batch
        self.done = done


@task(name="build-batch", cache_policy=NO_CACHE, task_run_name="{generator}-batch-{number:05d}")
def remote_batch(job: RemoteJob, run_id: str, generator: str, number: int) -> BatchResult:
    from mathsynth.flows.run_logs import forward_logs_in_process

    forward_logs_in_process()
    return execute_remote(job.config, run_id, job.batch, job.done)


class PlanPlugin(WorkerPlugin):
    """Hands a build run's plan to every worker, those that join later included, and takes
    it back when the build ends (Dask calls `setup` / `teardown` on each worker)."""

    def __init__(self, plan: BuildPlan) -> None:
        self.plan = plan
        self.name = f"mathsynth-plan-{plan.run_id}"

    def setup(self, worker: Any) -> None:
        install_plan(self.plan)

    def teardown(self, worker: Any) -> None:
        drop_plan(self.plan.run_id)


def _worker_llm_counters(key: str) -> dict[str, int]:
    from mathsynth.executor.workers import llm_counters

    return llm_counters(key)


def _close_worker_contexts(key: str) -> int:
    from mathsynth.executor.workers import close_contexts

    return close_contexts(key)


class DaskBatchRunner:
    """The Dask side of a build (see module docstring); use as a context manager."""

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx
        runner = ctx.config.runner
        self.config = ctx.config.model_copy(update={"out": ctx.out.resolve()})
        self.key = context_key(self.config)
        self.cluster: Any = None
        self.address = runner.address
        in_flight = batches_in_flight(ctx.config)
        self.threads_per_worker = max(1, math.ceil(in_flight / runner.workers))
        self.n_workers = runner.workers
        self.client: Any = None
        self.plugin: PlanPlugin | None = None
        self._current: Any = None
        self._llm_before: dict[str, dict[str, int]] = {}
        self.slots = in_flight

    def __enter__(self) -> DaskBatchRunner:
        from distributed import Client, LocalCluster

        if self.address is None:
            # Processes, not threads: each worker has its own GIL, sandbox and LLM client.
            self.cluster = LocalCluster(
                n_workers=self.n_workers,
                threads_per_worker=self.threads_per_worker,
                processes=True,
                dashboard_address=None,
            )
            self.address = self.cluster.scheduler_address
        try:
            self.client = Client(self.address, timeout="30s")
        except OSError as exc:
            self._close_cluster()
            raise ConfigError(
                f"cannot reach the Dask scheduler at {self.address} ({exc}): check --dask-address"
            ) from None
        # prefect-dask's task runner takes the current Dask client over its own address; make
        # it ours (a contextvar, which the generator subflows' threads inherit), not another
        # client this process may hold.
        self._current = Client.as_current(self.client)
        self._current.__enter__()
        threads = sum(self.client.nthreads().values()) or self.slots
        self.slots = max(self.slots, threads)
        self.plugin = PlanPlugin(BuildPlan(self.ctx.run_id, self.ctx.seeds, self.ctx.state))
        self.client.register_plugin(self.plugin)
        self._llm_before = self.client.run(_worker_llm_counters, self.key)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self.client is not None and self.plugin is not None:
                self.client.unregister_worker_plugin(self.plugin.name)
            if self.cluster is not None and self.client is not None:
                # Our own cluster is about to stop: close the workers' sandboxes first.
                self.client.run(_close_worker_contexts, self.key)
        finally:
            if self._current is not None:
                self._current.__exit__(None, None, None)
                self._current = None
            if self.client is not None:
                self.client.close()
            self._close_cluster()

    def _close_cluster(self) -> None:
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def task_runner(self) -> DaskTaskRunner:
        return DaskTaskRunner(address=self.address)

    def submit(self, batch: Batch, done: set[int]) -> PrefectFuture[Any]:
        job = RemoteJob(self.config, batch, frozenset(done))
        # Not `quote`d: Dask would unpack the annotation (a tuple) on its way to the worker.
        return remote_batch.submit(job, self.ctx.run_id, batch.generator, batch.number)

    def result(self, batch: Batch, future: PrefectFuture[Any]) -> BatchSummary:
        outcome: BatchResult = future.result()
        if not outcome.summary.skipped:
            commit_batch(self.ctx, batch, outcome)
        return outcome.summary

    def llm_counters(self) -> dict[str, int]:
        """LLM client counters the workers added during this build."""
        after = self.client.run(_worker_llm_counters, self.key)
        total: Counter[str] = Counter()
        for worker, counters in after.items():
            before = self._llm_before.get(worker, {})
            for name, value in counters.items():
                total[name] += value - before.get(name, 0)
        return {k: v for k, v in total.items() if v}
