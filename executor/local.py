"""What a build does, independent of Prefect: plan batches, assemble stages, run one batch.

This is the executor layer (datatrove's LocalPipelineExecutor, in spirit): it turns a config
into a deterministic list of batches and runs a batch as a lazy chain of stages, writing one
shard per output table and then marking the batch done in the catalog. It reads the method
registry (`mathsynth.registry`) and never names a method. `flows/` wraps `run_batch` in
Prefect tasks; `bench/` calls it directly to measure Prefect's overhead.

A batch's chain is: the source method's stage, then the checks every problem passes
(`ExecVerifier`, `ExactDedup`, and `Decontaminate` when benchmarks are named), then each
selected derived method's stages, so derived methods only ever start from problems that were
really verified. A finished build then loses its cross-batch and near duplicates
(`executor.publish`) and gets its dataset card (`storage.card`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mathsynth import __version__, registry
from mathsynth.config import BuildConfig
from mathsynth.errors import InputFileError
from mathsynth.executor.publish import contamination_index, drop_near_duplicates
from mathsynth.executor.timing import Timed, as_stats, batch_clock, timed
from mathsynth.generators.seeds.library import bundled_seeds
from mathsynth.records import Record, Rejection
from mathsynth.registry import Unit
from mathsynth.seeds import Seed, SeedTask
from mathsynth.stage import RecordStage, SourceStage, run_pipeline
from mathsynth.storage.card import write_card
from mathsynth.storage.catalog import Catalog
from mathsynth.storage.dedup import drop_cross_batch_duplicates
from mathsynth.storage.output_dir import LLM_CACHE_NAME, OutputClaim, clear_replaced_dataset
from mathsynth.storage.schemas import TABLES
from mathsynth.storage.shards import clear_temp, write_batch_shards
from mathsynth.storage.stats import generator_totals
from mathsynth.verifiers.decontam import STAGE as DECONTAM
from mathsynth.verifiers.decontam import Decontaminate, decontaminate_seeds
from mathsynth.verifiers.dedup import ExactDedup
from mathsynth.verifiers.exec_check import ExecVerifier
from mathsynth.verifiers.sandbox import Sandbox

# The batch that only writes rejections found before any generator ran (seed reading).
SEED_BATCH = "read_seeds"

# Batch started / finished lines; flows/ forwards this logger to the Prefect run's logs.
log = logging.getLogger("mathsynth.executor")

# Batches in flight by default when an LLM is configured (see `batches_in_flight`).
LLM_BATCHES_IN_FLIGHT = 4


def batches_in_flight(config: BuildConfig) -> int:
    """How many batches run at once (`runner.batches_in_flight`, else the default).

    Offline batches are CPU-bound: `max_workers` of them. An LLM batch alternates between
    waiting on the endpoint and checking what came back (sandbox, answer checks, writing);
    with several batches in flight, one batch's checks overlap the next one's requests, so
    the client keeps `llm.concurrency` requests in flight for the whole build instead of
    idling while a batch verifies (bench/llm_build.py measures it).
    """
    if config.runner.batches_in_flight is not None:
        return config.runner.batches_in_flight
    if config.llm.configured:
        return max(config.max_workers, LLM_BATCHES_IN_FLIGHT)
    return config.max_workers


@dataclass(frozen=True)
class Batch:
    """One unit of Prefect work: task ranges of one source method, or ready records
    (rejections found while reading / templating seeds, or planning) that only need writing."""

    number: int
    generator: str
    units: tuple[Unit, ...] = ()
    records: tuple[Record, ...] = ()

    @property
    def size(self) -> int:
        return sum(stop - start for _, start, stop in self.units) + len(self.records)

    def tasks(self, seeds: list[Seed]) -> Iterator[SeedTask]:
        for position, start, stop in self.units:
            seed = seeds[position] if position is not None else None
            for index in range(start, stop):
                yield SeedTask(generator=self.generator, seed=seed, index=index)


@dataclass
class BatchSummary:
    number: int
    generator: str
    skipped: bool
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)


@dataclass
class BuildContext:
    """Resources shared by every batch of one build (created once, closed at the end); the
    `registry.StageContext` that methods' planners and stage factories receive."""

    config: BuildConfig
    out: Path
    run_id: str
    catalog: Catalog
    sandbox: Sandbox
    seeds: list[Seed] = field(default_factory=list)
    llm: Any = None
    checker: Any = None
    lean: Any = None
    state: dict[str, Any] = field(default_factory=dict)
    seed_problems: dict[str, Any] = field(default_factory=dict)
    # Decontamination (executor.publish): the benchmarks' index, None when none is named.
    contamination: Any = None
    decontamination: dict[str, Any] = field(default_factory=dict)
    batches_written: int = 0
    _written_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def batch_written(self) -> None:
        with self._written_lock:
            self.batches_written += 1

    @property
    def config_hash(self) -> str:
        return self.config.content_hash()

    def answer_checker(self) -> Any:
        """The build's answer checker, started on first use (exact answers need it even
        without an LLM)."""
        with self._written_lock:
            if self.checker is None:
                from mathsynth.verifiers.answers import AnswerChecker

                # One worker: offline, only exact answers need math-verify, a few per batch.
                self.checker = AnswerChecker(workers=1)
            return self.checker

    def close(self) -> None:
        for resource in (self.llm, self.checker, self.lean):
            close = getattr(resource, "close", None)
            if callable(close):
                close()
        self.sandbox.close()


def open_context(config: BuildConfig, run_id: str) -> BuildContext:
    """Start the build's shared resources: the sandbox, the Lean backend when a selected
    method uses one, and with an LLM configured the client (its request cache in the output
    dir) and the answer checker."""
    out = config.out_dir
    sandbox = Sandbox(
        workers=config.sandbox.workers,
        timeout_s=config.sandbox.timeout_s,
        memory_mb=config.sandbox.memory_mb,
        recycle_after=config.sandbox.recycle_after,
        # the bundled library's own programs may share a worker; everything else gets its own
        trusted_programs=[s.spec.program for s in bundled_seeds() if s.spec is not None],
    )
    # Resources are behind `Timed` proxies: each batch's stats say how long it waited on
    # each of them (executor/timing.py).
    ctx = BuildContext(config, out, run_id, Catalog(out), Timed(sandbox, "sandbox"))  # type: ignore[arg-type]
    try:
        if any(m.uses_lean for m in registry.selected(config.generators)):
            from mathsynth.verifiers.lean import make_lean_backend

            # One backend per build: a REPL start re-imports Mathlib, far too slow per batch.
            lean = make_lean_backend(config.lean)
            ctx.lean = Timed(lean, "lean") if lean is not None else None
        if config.llm.configured:
            from mathsynth.generators.llm import LLMClient
            from mathsynth.verifiers.answers import AnswerChecker

            client = LLMClient(
                config.llm, config.api_key(), out / LLM_CACHE_NAME, batch_jobs=ctx.catalog
            )
            ctx.llm = Timed(client, "llm_wait")
            ctx.checker = Timed(AnswerChecker(), "answer_checks")
    except BaseException:
        ctx.close()
        raise
    return ctx


@contextmanager
def build_session(config: BuildConfig, run_id: str) -> Iterator[BuildContext]:
    """`open_context` for the length of a build, closed at the end.

    A build that fails before it wrote its first batch hands the output directory back as it
    found it (a request cache holding paid answers excepted), so a failed start, such as an
    unreachable LLM endpoint, leaves nothing that would refuse or confuse the next build.
    """
    claim = OutputClaim.take(config.out_dir)
    ctx: BuildContext | None = None
    try:
        ctx = open_context(config, run_id)
        yield ctx
    except BaseException:
        written = ctx.batches_written if ctx is not None else 0
        if ctx is not None:
            ctx.close()
            ctx = None
        if not written:
            claim.restore()
        raise
    finally:
        if ctx is not None:
            ctx.close()


# -- planning ---------------------------------------------------------------------------------


def load_seeds(ctx: BuildContext) -> tuple[list[Seed], list[Record]]:
    """Seeds for this build and the rejections found while reading and templating them.

    Bundled seeds come templated. Dataset seeds are read, then handed to the methods that
    template seeds (InfinityMATH's decoupling); seeds no templater can handle are rejected.
    """
    config = ctx.config
    if config.seeds is None:
        seeds = bundled_seeds()
        return _decontaminate(ctx, seeds[: config.max_seeds] if config.max_seeds else seeds, [])
    from mathsynth.generators.seeds.readers import read_seeds

    read: list[Seed] = []
    rejected: list[Record] = []
    for item in read_seeds(config.seeds, config.max_seeds):
        (read if isinstance(item, Seed) else rejected).append(item)
    # Before templating: a contaminated seed costs no LLM decoupling call either.
    read, rejected = _decontaminate(ctx, read, rejected)
    templated = [s for s in read if s.spec is not None]
    todo = [s for s in read if s.spec is None]
    for template_seeds in registry.seed_templaters().values():
        if not todo:
            break
        made, refused = template_seeds(ctx, todo)
        templated.extend(made)
        rejected.extend(refused)
        done = {s.id for s in made}
        todo = [s for s in todo if s.id not in done]
    order = {seed.id: i for i, seed in enumerate(read)}
    templated.sort(key=lambda seed: order[seed.id])
    return templated, rejected


def _decontaminate(
    ctx: BuildContext, seeds: list[Seed], rejected: list[Record]
) -> tuple[list[Seed], list[Record]]:
    """Drop the seeds that match a benchmark (`contaminated` rejections) before generation."""
    if ctx.contamination is None:
        return seeds, rejected
    kept, contaminated, stats = decontaminate_seeds(ctx.contamination, seeds)
    ctx.decontamination["seeds"] = stats
    return kept, [*rejected, *contaminated]


def check_seed_source(source: str, max_seeds: int | None) -> None:
    """Make sure a seed source can be read and holds at least one usable seed.

    Reads only up to the first usable row: later malformed rows become rejections during
    the build, this is the cheap up-front check that the source is a seed source at all.
    Failure modes: InputFileError from the reader (missing file, not JSONL, unreadable
    Parquet, unknown dataset), or when no row at all is a usable seed (the first rejection
    names file and line).
    """
    from mathsynth.generators.seeds.readers import read_seeds

    first_problem: Rejection | None = None
    for item in read_seeds(source, max_seeds):
        if isinstance(item, Seed):
            return
        if first_problem is None:
            first_problem = item
    why = first_problem.detail if first_problem is not None else "the source is empty"
    raise InputFileError(source, f"no usable seed row ({why})")


def pack_batches(units: list[Unit], generator: str, batch_size: int, first: int) -> list[Batch]:
    """Cut units into batches of about `batch_size` tasks; a unit is never split.

    Keeping a seed's variants in one unit lets a generator dedupe them deterministically.
    """
    batches: list[Batch] = []
    current: list[Unit] = []
    size = 0
    for unit in units:
        n = unit[2] - unit[1]
        if current and size + n > batch_size:
            batches.append(Batch(first + len(batches), generator, tuple(current)))
            current, size = [], 0
        current.append(unit)
        size += n
    if current:
        batches.append(Batch(first + len(batches), generator, tuple(current)))
    return batches


def plan_batches(ctx: BuildContext, pre_rejected: list[Record]) -> list[Batch]:
    """Every batch of the build, numbered in a fixed order: the plan of a rerun is identical."""
    batches: list[Batch] = []
    rejected = list(pre_rejected)
    for method in registry.selected(ctx.config.generators):
        if method.plan is None:
            continue
        plan = method.plan(ctx)
        rejected.extend(plan.rejected)
        batches.extend(pack_batches(plan.units, method.name, ctx.config.batch_size, len(batches)))
    if rejected:
        batches.append(Batch(len(batches), SEED_BATCH, records=tuple(rejected)))
    return batches


# -- running ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class BatchStages:
    """A batch's chain: the source method's stage, the checks, the derived methods' stages
    (all empty for a batch of ready records)."""

    source: SourceStage | None = None
    checks: tuple[RecordStage, ...] = ()
    derived: tuple[RecordStage, ...] = ()

    @property
    def all(self) -> list[SourceStage | RecordStage]:
        return [s for s in (self.source, *self.checks, *self.derived) if s is not None]


def batch_stages(ctx: BuildContext, batch: Batch) -> BatchStages:
    if not batch.units:
        return BatchStages()
    (source,) = registry.get(batch.generator).stages(ctx)
    derived = [
        stage
        for method in registry.selected(ctx.config.generators)
        if method.role == "derived"
        for stage in method.stages(ctx)
    ]
    checks: list[RecordStage] = [
        ExecVerifier(sandbox=ctx.sandbox, checker=ctx.answer_checker),
        ExactDedup(),
    ]
    if ctx.contamination is not None:
        checks.append(Decontaminate(ctx.contamination))
    return BatchStages(source, tuple(checks), tuple(derived))


@dataclass
class BatchResult:
    """What running a batch produced, before the manifest knows: its summary and its shards
    as (table, path relative to the output dir, rows, bytes)."""

    summary: BatchSummary
    shards: list[tuple[str, str, int, int]] = field(default_factory=list)


def run_batch(ctx: BuildContext, batch: Batch, done: set[int] | None = None) -> BatchSummary:
    """Run one batch end to end unless the manifest says it is finished.

    Shards are written before the manifest row, so a crash in between only means the batch
    runs again and rewrites the same shard names with the same rows.
    """
    finished = done if done is not None else ctx.catalog.finished_batches()
    if batch.number in finished:
        return BatchSummary(batch.number, batch.generator, skipped=True)
    result = execute_batch(ctx, batch)
    commit_batch(ctx, batch, result)
    return result.summary


def execute_batch(ctx: BuildContext, batch: Batch) -> BatchResult:
    """Run a batch's stages and write its shards; the manifest is not touched.

    Split from `commit_batch` so that a batch can run in another process (a Dask worker)
    while the catalog is only ever written by the build's own process.
    """
    start = time.perf_counter()
    log.info("batch %05d (%s) started: %d tasks", batch.number, batch.generator, batch.size)
    with batch_clock() as clock:
        chain = batch_stages(ctx, batch)
        data: Iterable[Any] = batch.tasks(ctx.seeds) if chain.source is not None else batch.records
        derived = {stage.name for stage in chain.derived}
        counts: Counter[str] = Counter()
        # Stamped here, once, so every generator's rows carry the same build identity.
        identity = {
            "config_hash": ctx.config_hash,
            "pipeline_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "batch": batch.number,
            "sandbox": ctx.sandbox.isolation,  # the isolation level this batch's programs ran under
        }

        def counted(stream: Iterable[Record]) -> Iterator[Record]:
            for record in stream:
                provenance = getattr(record, "provenance", None)
                if provenance is not None:
                    for key, value in identity.items():
                        provenance.setdefault(key, value)
                counts[record.table] += 1
                if isinstance(record, Rejection):
                    counts[f"rejected.{record.stage}"] += 1
                    # What the source method's own work lost (acceptance rates): rejections by
                    # derived stages judge pairs / statements of rows that were accepted.
                    if record.stage not in derived:
                        counts["rejected_before_derived"] += 1
                yield record

        # Materialised before writing so that the time split can tell the stages' work
        # from the writing (the stages are lazy generators the writer would pull).
        records = list(counted(run_pipeline(chain.source, [*chain.checks, *chain.derived], data)))
        with timed("writing"):
            shards = write_batch_shards(ctx.out, batch.number, records)
        del records
    stats: Counter[str] = Counter()
    for stage in chain.all:
        for key, value in stage.stats.items():
            stats[f"{stage.name}.{key}"] += value
    seconds = time.perf_counter() - start
    clock["total"] = seconds
    stats.update(as_stats(clock))
    summary = BatchSummary(batch.number, batch.generator, False, seconds, dict(counts), dict(stats))
    rows = [(t, str(s.path.relative_to(ctx.out)), s.rows, s.bytes) for t, s in shards.items()]
    return BatchResult(summary, rows)


def commit_batch(ctx: BuildContext, batch: Batch, result: BatchResult) -> None:
    """Mark a batch finished in the manifest, with its shards (after `execute_batch`)."""
    summary = result.summary
    ctx.catalog.record_batch(
        batch.number,
        generator=batch.generator,
        tasks=batch.size,
        run_id=ctx.run_id,
        seconds=summary.seconds,
        counts=summary.counts,
        stats=summary.stats,
        shards=result.shards,
    )
    ctx.batch_written()
    log.info(
        "batch %05d (%s) finished in %.1f s: %s",
        batch.number,
        batch.generator,
        summary.seconds,
        describe_counts(summary.counts),
    )


def describe_counts(counts: dict[str, int]) -> str:
    """ "12 sft, 12 dpo, 3 rejected (exec_verify 2, dedup 1)" for log lines."""
    parts = [f"{counts.get(t, 0)} {t}" for t in TABLES if t != "rejected" and counts.get(t)]
    rejected = counts.get("rejected", 0)
    if rejected:
        by_stage = sorted(
            (
                (k.removeprefix("rejected."), v)
                for k, v in counts.items()
                if k.startswith("rejected.")
            ),
            key=lambda kv: -kv[1],
        )
        detail = ", ".join(f"{stage} {n}" for stage, n in by_stage)
        parts.append(f"{rejected} rejected ({detail})")
    return ", ".join(parts) or "nothing written"


# -- a whole build, minus orchestration -------------------------------------------------------


def prepare_build(ctx: BuildContext, overwrite: bool) -> tuple[list[Batch], set[int]]:
    """Read (and template) the seeds, claim the output dir, plan; returns the batches and the
    numbers of those already finished. Seeds are read before anything is written, so bad
    input leaves the output directory untouched."""
    config = ctx.config
    ctx.contamination, ctx.decontamination = contamination_index(config)
    ctx.seeds, pre_rejected = load_seeds(ctx)
    unreadable = [r for r in pre_rejected if isinstance(r, Rejection) and r.stage == SEED_BATCH]
    contaminated = [r for r in pre_rejected if isinstance(r, Rejection) and r.stage == DECONTAM]
    ctx.seed_problems = {
        "unreadable": len(unreadable),
        "first": unreadable[0].detail if unreadable else None,
        "untemplated": len(pre_rejected) - len(unreadable) - len(contaminated),
        "contaminated": len(contaminated),
    }
    if overwrite:
        clear_replaced_dataset(ctx.out, ctx.config_hash)
    ctx.catalog.init(ctx.config_hash, config.effective(), overwrite)
    clear_temp(ctx.out)
    batches = plan_batches(ctx, pre_rejected)
    ctx.catalog.start_build(ctx.run_id, ctx.config_hash, config.effective())
    return batches, ctx.catalog.finished_batches()


def finish_build(
    ctx: BuildContext,
    summaries: list[BatchSummary],
    seconds: float,
    worker_llm: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Refresh the catalog views, record the run, and return the build report (per-generator
    counts come from the catalog, so batches finished by earlier, crashed runs count too).

    `worker_llm`: LLM client counters of other processes that ran batches (Dask workers),
    added to this process's own (planning, and every batch with the thread runner).
    """
    dropped = drop_cross_batch_duplicates(ctx.out, ctx.catalog)
    near_duplicates = drop_near_duplicates(ctx, ctx.catalog)
    # One catalog connection for the reports, views, run row and card (each would open its
    # own); held for well under a second, so `mathsynth stats` meanwhile only waits briefly.
    with ctx.catalog.session():
        return _finish(ctx, summaries, seconds, dropped, near_duplicates, worker_llm)


def _finish(
    ctx: BuildContext,
    summaries: list[BatchSummary],
    seconds: float,
    dropped: dict[str, int],
    near_duplicates: dict[str, Any],
    worker_llm: dict[str, int] | None,
) -> dict[str, Any]:
    ctx.catalog.set_report("near_duplicates", near_duplicates)
    ctx.catalog.set_report("decontamination", ctx.decontamination)
    ctx.catalog.refresh_views()
    generators = generator_totals(ctx.catalog)
    counts: Counter[str] = Counter()
    for summary in summaries:
        counts.update(summary.counts)
    report = {
        "out": str(ctx.out),
        "config_hash": ctx.config_hash,
        "seconds": round(seconds, 2),
        "batches": len(summaries),
        "batches_skipped": sum(s.skipped for s in summaries),
        "generators": generators,
        "totals": {t: sum(g[t] for g in generators) for t in TABLES},
        "llm": _llm_totals(ctx, worker_llm),
        "duplicates_dropped": dropped,
        "near_duplicates": near_duplicates,
        "seed_problems": ctx.seed_problems,
    }
    ctx.catalog.finish_build(
        ctx.run_id,
        status="completed",
        seconds=seconds,
        batches_total=report["batches"],
        batches_skipped=report["batches_skipped"],
        counts=dict(counts),
        llm=report["llm"],
    )
    # Last, so the card describes the finished build (it reads the catalog's build rows).
    report["card"] = str(write_card(ctx.out))
    return report


def _llm_totals(ctx: BuildContext, worker_llm: dict[str, int] | None) -> dict[str, int]:
    totals: Counter[str] = Counter(dict(ctx.llm.stats) if ctx.llm is not None else {})
    totals.update(worker_llm or {})
    return dict(totals)
