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
    )
    ctx = BuildContext(config, out, run_id, Catalog(out), sandbox)
    try:
        if any(m.uses_lean for m in registry.selected(config.generators)):
            from mathsynth.verifiers.lean import make_lean_backend

            # One backend per build: a REPL start re-imports Mathlib, far too slow per batch.
            ctx.lean = make_lean_backend(config.lean)
        if config.llm.configured:
            from mathsynth.generators.llm import LLMClient
            from mathsynth.verifiers.answers import AnswerChecker

            ctx.llm = LLMClient(config.llm, config.api_key(), out / LLM_CACHE_NAME)
            ctx.checker = AnswerChecker()
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
    checks: list[RecordStage] = [ExecVerifier(sandbox=ctx.sandbox), ExactDedup()]
    if ctx.contamination is not None:
        checks.append(Decontaminate(ctx.contamination))
    return BatchStages(source, tuple(checks), tuple(derived))


def run_batch(ctx: BuildContext, batch: Batch, done: set[int] | None = None) -> BatchSummary:
    """Run one batch end to end unless the manifest says it is finished.

    Shards are written before the manifest row, so a crash in between only means the batch
    runs again and rewrites the same shard names with the same rows.
    """
    finished = done if done is not None else ctx.catalog.finished_batches()
    if batch.number in finished:
        return BatchSummary(batch.number, batch.generator, skipped=True)
    start = time.perf_counter()
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

    records = run_pipeline(chain.source, [*chain.checks, *chain.derived], data)
    shards = write_batch_shards(ctx.out, batch.number, counted(records))
    stats: Counter[str] = Counter()
    for stage in chain.all:
        for key, value in stage.stats.items():
            stats[f"{stage.name}.{key}"] += value
    seconds = time.perf_counter() - start
    ctx.catalog.record_batch(
        batch.number,
        generator=batch.generator,
        tasks=batch.size,
        run_id=ctx.run_id,
        seconds=seconds,
        counts=dict(counts),
        stats=dict(stats),
        shards=[(t, str(s.path.relative_to(ctx.out)), s.rows, s.bytes) for t, s in shards.items()],
    )
    ctx.batch_written()
    return BatchSummary(batch.number, batch.generator, False, seconds, dict(counts), dict(stats))


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
    ctx: BuildContext, summaries: list[BatchSummary], seconds: float
) -> dict[str, Any]:
    """Refresh the catalog views, record the run, and return the build report (per-generator
    counts come from the catalog, so batches finished by earlier, crashed runs count too)."""
    dropped = drop_cross_batch_duplicates(ctx.out, ctx.catalog)
    near_duplicates = drop_near_duplicates(ctx, ctx.catalog)
    # One catalog connection for the reports, views, run row and card (each would open its
    # own); held for well under a second, so `mathsynth stats` meanwhile only waits briefly.
    with ctx.catalog.session():
        return _finish(ctx, summaries, seconds, dropped, near_duplicates)


def _finish(
    ctx: BuildContext,
    summaries: list[BatchSummary],
    seconds: float,
    dropped: dict[str, int],
    near_duplicates: dict[str, Any],
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
        "llm": dict(ctx.llm.stats) if ctx.llm is not None else {},
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
