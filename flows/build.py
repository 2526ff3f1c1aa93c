"""The `build` Prefect flow: one task per batch, artifacts for the UI. Wiring only — the work
itself is `mathsynth.executor.local.run_batch`.

Resume is decided by the dataset's own manifest (catalog.duckdb), not by Prefect's result
cache: the manifest travels with the output directory and cannot claim a batch is done when
its shards were deleted (`--overwrite`, a moved directory, a wiped ~/.prefect).

Batches run on the build's own threads (`runner.kind: threads`, the default) or on a Dask
cluster (`dask`, flows/dask_runner.py). Every generator has its own subflow (its group in the
UI); the subflows run at once and share one bound on the batches in flight
(`executor.local.batches_in_flight`), so one generator's last batches verify while the next
one's first batches already wait on the LLM.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import as_completed as as_completed_futures
from dataclasses import dataclass, field
from typing import Any, Protocol

from prefect import flow, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.futures import PrefectFuture
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from mathsynth.config import BuildConfig
from mathsynth.executor.local import (
    Batch,
    BatchSummary,
    BuildContext,
    batches_in_flight,
    build_session,
    check_seed_source,
    finish_build,
    prepare_build,
    run_batch,
)
from mathsynth.executor.publish import read_benchmarks
from mathsynth.flows.run_logs import forward_logs
from mathsynth.storage.output_dir import check_output
from mathsynth.storage.stats import generator_table, rejection_reasons

log = logging.getLogger("mathsynth.build")

ProgressListener = Callable[[BatchSummary, int, int], None]
_listeners: list[ProgressListener] = []
_listeners_lock = threading.Lock()


def add_progress_listener(listener: ProgressListener) -> Callable[[], None]:
    """Call `listener(summary, done, total)` after each batch; returns an unsubscribe."""
    with _listeners_lock:
        _listeners.append(listener)
    return lambda: _listeners.remove(listener)


@task(name="build-batch", cache_policy=NO_CACHE, task_run_name="{generator}-batch-{number:05d}")
def build_batch(
    ctx: BuildContext, batch: Batch, done: set[int], generator: str, number: int
) -> BatchSummary:
    return run_batch(ctx, batch, done)


def check_inputs(config: BuildConfig, overwrite: bool) -> None:
    """Everything that can be refused before a flow run starts: the output dir and the seeds.

    Run by `run_build` ahead of the flow so bad input is one clear error, with nothing
    written and no flow-run traceback; the flow repeats the checks for scheduled runs.
    Failure modes: DatasetConflictError, InputFileError (missing / unreadable seeds, or a
    source in which no row is a usable seed; a benchmark that cannot be read).
    """
    check_output(config.out_dir, config.content_hash(), overwrite)
    if config.seeds is not None:
        check_seed_source(config.seeds, config.max_seeds)
    read_benchmarks(config)  # --decontaminate sources: readable, with questions


@flow(name="mathsynth-build", log_prints=False)
def build_flow(config: BuildConfig, overwrite: bool = False) -> dict[str, Any]:
    """Build (or resume) the dataset described by `config`; returns the build summary."""
    return _build(config, overwrite)


def _build(config: BuildConfig, overwrite: bool) -> dict[str, Any]:
    """The build flow's body, also run directly by `scheduled_build` (so a deployment's own
    flow run shows the build's logs and artifacts)."""
    started = time.perf_counter()
    try:
        flow_run_id = get_run_context().flow_run.id  # type: ignore[union-attr]
        run_id = str(flow_run_id)
    except Exception:  # noqa: BLE001 - outside a flow run (direct call in tests/bench)
        flow_run_id, run_id = None, uuid.uuid4().hex
    check_output(config.out_dir, config.content_hash(), overwrite)
    with forward_logs(flow_run_id), build_session(config, run_id) as ctx:
        batches, done = prepare_build(ctx, overwrite)
        planned = time.perf_counter() - started
        todo = sum(1 for b in batches if b.number not in done)
        log.info(
            "build %s (config %s): %d batches planned in %.1f s, %d already done; "
            "runner %s, %d batches in flight",
            ctx.out,
            ctx.config_hash,
            len(batches),
            planned,
            len(batches) - todo,
            config.runner.kind,
            batches_in_flight(config),
        )
        with _open_runner(ctx) as runner:
            summaries = _run_batches(ctx, batches, done, runner)
            worker_llm = runner.llm_counters()
        report = finish_build(ctx, summaries, time.perf_counter() - started, worker_llm)
        report["plan_seconds"] = round(planned, 2)
        _log_outcome(ctx, report)
    _publish_report(report)
    from mathsynth.flows.report_cmd import publish_report_artifacts

    publish_report_artifacts(ctx.out)
    return report


class _BatchRunner(Protocol):
    """Where a build's batch tasks run (threads here, Dask in flows/dask_runner.py)."""

    slots: int

    def __enter__(self) -> _BatchRunner: ...
    def __exit__(self, *exc: object) -> None: ...
    def task_runner(self) -> TaskRunner[Any]: ...
    def submit(self, batch: Batch, done: set[int]) -> PrefectFuture[Any]: ...
    def result(self, batch: Batch, future: PrefectFuture[Any]) -> BatchSummary: ...
    def llm_counters(self) -> dict[str, int]: ...


class _ThreadRunner:
    """Batches on threads of this process, sharing the build's resources."""

    def __init__(self, ctx: BuildContext) -> None:
        self.ctx = ctx
        self.slots = batches_in_flight(ctx.config)

    def __enter__(self) -> _ThreadRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def task_runner(self) -> TaskRunner[Any]:
        return ThreadPoolTaskRunner(max_workers=self.slots)

    def submit(self, batch: Batch, done: set[int]) -> PrefectFuture[Any]:
        return build_batch.submit(
            quote(self.ctx), quote(batch), quote(done), batch.generator, batch.number
        )

    def result(self, batch: Batch, future: PrefectFuture[Any]) -> BatchSummary:
        return future.result()

    def llm_counters(self) -> dict[str, int]:
        return {}  # the build's own client counted everything


def _open_runner(ctx: BuildContext) -> _BatchRunner:
    if ctx.config.runner.kind == "dask":
        from mathsynth.flows.dask_runner import DaskBatchRunner

        return DaskBatchRunner(ctx)
    return _ThreadRunner(ctx)


def _run_batches(
    ctx: BuildContext, batches: list[Batch], done: set[int], runner: _BatchRunner
) -> list[BatchSummary]:
    """One subflow per generator (its own group in the UI), all running at once; batches as
    tasks inside them, at most `runner.slots` in flight across the build."""
    progress_id = create_progress_artifact(
        progress=0.0, key="build-progress", description=f"Batches done for {ctx.out}"
    )
    generators = list(dict.fromkeys(b.generator for b in batches if b.units))
    run = _ActiveBuild(
        ctx,
        batches,
        done,
        _Tracker(progress_id, len(batches)),
        runner,
        runner.slots,
        len(generators),
    )
    token = uuid.uuid4().hex
    _active_builds[token] = run
    generate = generate_flow.with_options(task_runner=runner.task_runner())
    summaries: list[BatchSummary] = []
    try:
        if generators:
            # Threads with the flow's context copied in, so each subflow is a child of
            # this flow run (Prefect's own engine runs in the calling thread).
            with ThreadPoolExecutor(len(generators), thread_name_prefix="generator") as pool:
                futures = [
                    pool.submit(contextvars.copy_context().run, generate, token, generator)
                    for generator in generators
                ]
                errors = []
                for future in as_completed_futures(futures):
                    try:
                        summaries.extend(future.result())
                    except BaseException as exc:  # noqa: BLE001 - re-raised below
                        run.failed.set()
                        errors.append(exc)
                if errors:
                    # The failure itself, not the subflows that stopped because of it.
                    raise next((e for e in errors if not isinstance(e, _Stopped)), errors[0])
        # Rejections found while reading seeds need only writing: no subflow of their own.
        for batch in batches:
            if not batch.units:
                summary = build_batch(
                    quote(ctx), quote(batch), quote(done), batch.generator, batch.number
                )
                summaries.append(summary)
                run.tracker.batch_finished(summary)
    finally:
        del _active_builds[token]
    return sorted(summaries, key=lambda s: s.number)


@dataclass
class _ActiveBuild:
    ctx: BuildContext
    batches: list[Batch]
    done: set[int]
    tracker: _Tracker
    runner: _BatchRunner
    in_flight: int
    subflows: int
    failed: threading.Event = field(default_factory=threading.Event)
    slots: threading.BoundedSemaphore = field(init=False)
    all_started: threading.Event = field(default_factory=threading.Event)
    _started: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.slots = threading.BoundedSemaphore(self.in_flight)

    def subflow_started(self) -> None:
        """Wait until every generator's subflow run exists before running any batch.

        Creating a flow run parses source code (Prefect's parameter schema), and CPython
        3.11's `ast.parse` is not safe while another thread parses too (gh-106905,
        "AST constructor recursion depth mismatch"); the batches' stages parse programs.
        """
        with self._lock:
            self._started += 1
            if self._started >= self.subflows:
                self.all_started.set()
        while not self.all_started.wait(_POLL_S):
            if self.failed.is_set():
                raise _Stopped("stopped before starting: another generator's subflow failed")


# Subflow parameters are serialised to the Prefect API, so the subflow receives a token and
# finds the (large, unserialisable) build state here, in the same process.
_active_builds: dict[str, _ActiveBuild] = {}


class _Tracker:
    """Counts finished batches across subflows for the progress artifact and listeners."""

    # Each update is an API round trip (and CPU) on the flow's thread; the UI needs few.
    MIN_UPDATE_INTERVAL_S = 5.0

    def __init__(self, progress_id: Any, total: int) -> None:
        self.progress_id = progress_id
        self.total = total
        self.done = 0
        self._last_update = 0.0
        self._lock = threading.Lock()

    def batch_finished(self, summary: BatchSummary) -> None:
        with self._lock:
            self.done += 1
            done = self.done
            now = time.monotonic()
            due = now - self._last_update >= self.MIN_UPDATE_INTERVAL_S or done == self.total
            if due:
                self._last_update = now
        if self.progress_id is not None and due:
            update_progress_artifact(self.progress_id, 100.0 * done / self.total)
        with _listeners_lock:
            listeners = list(_listeners)
        for listener in listeners:
            listener(summary, done, self.total)


# How often a subflow waiting for a free slot collects its finished batches.
_POLL_S = 0.2


class _Stopped(RuntimeError):
    """A generator's subflow stopped submitting because another one failed."""


@flow(name="mathsynth-generate", flow_run_name="{generator}")
def generate_flow(token: str, generator: str) -> list[BatchSummary]:
    """One generator's batches as tasks (the generator's group in the UI) + its artifact.

    Batches are submitted as slots free up; finished ones are collected (committed, counted,
    logged) in this thread while later ones are still being submitted.
    """
    # The body lives in a module-level function: task runners that ship the run context
    # to other processes (Dask) pickle this flow, and a function is pickled by reference
    # while a flow's own body would be pickled by value, with the build state it uses.
    return _generate(token, generator)


def _generate(token: str, generator: str) -> list[BatchSummary]:
    run = _active_builds[token]
    run.subflow_started()
    ctx, tracker = run.ctx, run.tracker
    finished: queue.Queue[PrefectFuture[Any]] = queue.Queue()
    pending: dict[PrefectFuture[Any], Batch] = {}
    summaries: list[BatchSummary] = []

    def on_done(future: PrefectFuture[Any]) -> None:
        run.slots.release()
        finished.put(future)

    def collect(block: bool) -> None:
        while pending:
            try:
                future = finished.get(block=block)
            except queue.Empty:
                return
            batch = pending.pop(future)
            summary = run.runner.result(batch, future)
            summaries.append(summary)
            tracker.batch_finished(summary)
            block = block and bool(pending)

    try:
        for batch in run.batches:
            if batch.generator != generator:
                continue
            while not run.slots.acquire(timeout=_POLL_S):
                if run.failed.is_set():
                    raise _Stopped(f"{generator}: stopped, another generator's batch failed")
                collect(block=False)
            try:
                future = run.runner.submit(batch, run.done)
            except BaseException:
                run.slots.release()
                raise
            pending[future] = batch
            future.add_done_callback(on_done)
            collect(block=False)
        while pending:
            collect(block=True)
    except BaseException:
        run.failed.set()
        raise
    table = generator_table(ctx.catalog, generator)
    create_table_artifact(
        key=f"generator-{generator.replace('_', '-')}",
        table=table,
        description=f"{generator}: accepted, rejected by reason, LLM requests/tokens/cost",
    )
    _log_generator(ctx, generator, summaries)
    return summaries


def _log_generator(ctx: BuildContext, generator: str, summaries: list[BatchSummary]) -> None:
    """The generator's rejection summary, in its subflow's logs."""
    ran = [s for s in summaries if not s.skipped]
    written = sum(s.counts.get("sft", 0) for s in ran)
    rejected = sum(s.counts.get("rejected_before_derived", 0) for s in ran)
    reasons = rejection_reasons(ctx.catalog, generator)
    top = ", ".join(f"{stage}:{reason} {n}" for stage, reason, n in reasons[:8])
    log.info(
        "%s: %d batches run (%d already done), %d sft rows, %d rejected%s",
        generator,
        len(ran),
        len(summaries) - len(ran),
        written,
        rejected,
        f"; rejections over the dataset: {top}" if top else "",
    )
    if ran and written == 0:
        log.warning("%s: no sft row was accepted in this run", generator)


def _log_outcome(ctx: BuildContext, report: dict[str, Any]) -> None:
    """The build's totals, rejection summary and warnings, in the build's flow run logs."""
    totals = ", ".join(f"{n} {t}" for t, n in report["totals"].items())
    log.info(
        "build finished in %.1f s: %s (%d batches, %d already done)",
        report["seconds"],
        totals,
        report["batches"],
        report["batches_skipped"],
    )
    reasons = rejection_reasons(ctx.catalog)
    if reasons:
        log.info(
            "rejections by stage and reason: %s",
            ", ".join(f"{stage}:{reason} {n}" for stage, reason, n in reasons[:12]),
        )
    problems = report.get("seed_problems") or {}
    if problems.get("unreadable"):
        log.warning(
            "%d seed row(s) could not be read and were skipped (first: %s)",
            problems["unreadable"],
            problems["first"],
        )
    if problems.get("untemplated"):
        log.warning("%d seed(s) could not be turned into templates", problems["untemplated"])
    llm = report.get("llm") or {}
    failed = sum(v for k, v in llm.items() if k.startswith("failed_"))
    if failed:
        log.warning(
            "%d LLM request(s) failed after retries (%s); their records are in rejected/",
            failed,
            ", ".join(
                f"{k.removeprefix('failed_')} {v}"
                for k, v in llm.items()
                if k.startswith("failed_")
            ),
        )
    dropped = sum((report.get("duplicates_dropped") or {}).values())
    if dropped:
        log.info("%d rows dropped as duplicates across batches", dropped)


def run_build(
    config: BuildConfig, overwrite: bool = False, *, checked: bool = False
) -> dict[str, Any]:
    """Check the inputs (unless the caller just did: `checked`), then run the build flow with
    at most `config.max_workers` batch tasks at a time."""
    if not checked:
        check_inputs(config, overwrite)
    runner = ThreadPoolTaskRunner(max_workers=config.max_workers)
    return build_flow.with_options(task_runner=runner)(config=config, overwrite=overwrite)


def _publish_report(report: dict[str, Any]) -> None:
    create_table_artifact(
        key="build-generators",
        table=report["generators"],
        description="Rows per generator (accepted sft/dpo/formal and rejected)",
    )
    totals = report["totals"]
    create_markdown_artifact(
        key="build-report",
        markdown=(
            f"# mathsynth build\n\nOutput: `{report['out']}` (config `{report['config_hash']}`)\n\n"
            f"| table | rows |\n|---|---|\n"
            + "".join(f"| {t} | {n} |\n" for t, n in totals.items())
            + f"\n{report['batches']} batches ({report['batches_skipped']} already done), "
            f"{report['seconds']} s\n"
        ),
        description="Build summary",
    )


@flow(name="mathsynth-scheduled-build")
def scheduled_build(
    config_path: str | None = None, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Deployment entry point (prefect.yaml): JSON parameters in, the build flow as a subflow.

    `overrides` uses the CLI's dotted keys, e.g. {"variants": 256, "llm.model": "qwen"}.
    """
    from mathsynth.config import load_config

    config = load_config(config_path, **(overrides or {}))
    return _build(config, overwrite=False)
