"""The `build` Prefect flow: one task per batch, artifacts for the UI. Wiring only — the work
itself is `mathsynth.pipeline.run_batch`.

Resume is decided by the dataset's own manifest (catalog.duckdb), not by Prefect's result
cache: the manifest travels with the output directory and cannot claim a batch is done when
its shards were deleted (`--overwrite`, a moved directory, a wiped ~/.prefect).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prefect import flow, task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.cache_policies import NO_CACHE
from prefect.context import get_run_context
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from mathsynth.config import BuildConfig
from mathsynth.executor.local import (
    Batch,
    BatchSummary,
    BuildContext,
    build_session,
    check_seed_source,
    finish_build,
    prepare_build,
    run_batch,
)
from mathsynth.executor.publish import read_benchmarks
from mathsynth.storage.output_dir import check_output
from mathsynth.storage.stats import generator_table

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
    started = time.perf_counter()
    try:
        run_id = str(get_run_context().flow_run.id)  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - outside a flow run (direct call in tests/bench)
        run_id = uuid.uuid4().hex
    check_output(config.out_dir, config.content_hash(), overwrite)
    with build_session(config, run_id) as ctx:
        batches, done = prepare_build(ctx, overwrite)
        summaries = _run_batches(ctx, batches, done)
        report = finish_build(ctx, summaries, time.perf_counter() - started)
    _publish_report(report)
    return report


def _run_batches(ctx: BuildContext, batches: list[Batch], done: set[int]) -> list[BatchSummary]:
    """One subflow per generator (its own group in the UI), batches as tasks inside it."""
    progress_id = create_progress_artifact(
        progress=0.0, key="build-progress", description=f"Batches done for {ctx.out}"
    )
    run = _ActiveBuild(ctx, batches, done, _Tracker(progress_id, len(batches)))
    token = uuid.uuid4().hex
    _active_builds[token] = run
    runner = ThreadPoolTaskRunner(max_workers=ctx.config.max_workers)
    generate = generate_flow.with_options(task_runner=runner)
    summaries: list[BatchSummary] = []
    try:
        for generator in dict.fromkeys(b.generator for b in batches if b.units):
            summaries.extend(generate(token, generator))
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

    def batch_finished(self, summary: BatchSummary) -> None:
        self.done += 1
        now = time.monotonic()
        due = now - self._last_update >= self.MIN_UPDATE_INTERVAL_S or self.done == self.total
        if self.progress_id is not None and due:
            update_progress_artifact(self.progress_id, 100.0 * self.done / self.total)
            self._last_update = now
        with _listeners_lock:
            listeners = list(_listeners)
        for listener in listeners:
            listener(summary, self.done, self.total)


@flow(name="mathsynth-generate", flow_run_name="{generator}")
def generate_flow(token: str, generator: str) -> list[BatchSummary]:
    """One generator's batches as tasks (the generator's group in the UI) + its artifact."""
    run = _active_builds[token]
    ctx, tracker = run.ctx, run.tracker
    futures = [
        build_batch.submit(quote(ctx), quote(batch), quote(run.done), generator, batch.number)
        for batch in run.batches
        if batch.generator == generator
    ]
    summaries = []
    for future in as_completed(futures):
        summary: BatchSummary = future.result()
        summaries.append(summary)
        tracker.batch_finished(summary)
    table = generator_table(ctx.catalog, generator)
    create_table_artifact(
        key=f"generator-{generator.replace('_', '-')}",
        table=table,
        description=f"{generator}: accepted, rejected by reason, LLM requests/tokens/cost",
    )
    return summaries


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
    return build_flow(config=config, overwrite=False)
