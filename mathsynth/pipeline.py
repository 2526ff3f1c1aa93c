"""What a build does, independent of Prefect: plan batches, assemble stages, run one batch.

This is the executor layer (datatrove's LocalPipelineExecutor, in spirit): it turns a config
into a deterministic list of batches and runs a batch as a lazy chain of stages, writing one
shard per output table and then marking the batch done in the catalog. `flows/` wraps
`run_batch` in Prefect tasks; `bench/` calls it directly to measure Prefect's overhead.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from generators.infinitymath import InstantiateVariants
from generators.seeds.spec import Seed, SeedSpec, SeedTask, bundled_seeds
from mathsynth import __version__
from mathsynth.config import BuildConfig
from mathsynth.errors import ConfigError, InputFileError
from mathsynth.records import Record, Rejection
from mathsynth.stage import Stage, run_pipeline
from storage.catalog import Catalog
from storage.dedup import drop_cross_batch_duplicates
from storage.output_dir import LLM_CACHE_NAME, OutputClaim, clear_replaced_dataset
from storage.schemas import TABLES
from storage.shards import clear_temp, write_batch_shards
from storage.stats import generator_totals
from verifiers.dedup import ExactDedup
from verifiers.exec_check import ExecVerifier
from verifiers.sandbox import Sandbox

SOURCE_GENERATORS = ("infinitymath", "mugglemath", "mathscale")


# A unit is (seed position in the build's seed list or None, first index, stop index): the
# SeedTasks it stands for are made only when the batch runs, so a 200k-row plan stays small.
Unit = tuple[int | None, int, int]


@dataclass(frozen=True)
class Batch:
    """One unit of Prefect work: task ranges of one source generator, or ready records
    (rejections found while reading / decoupling seeds) that only need writing."""

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
    """Resources shared by every batch of one build (created once, closed at the end)."""

    config: BuildConfig
    out: Path
    run_id: str
    catalog: Catalog
    sandbox: Sandbox
    seeds: list[Seed] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    batches_written: int = 0
    _written_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def batch_written(self) -> None:
        with self._written_lock:
            self.batches_written += 1

    @property
    def config_hash(self) -> str:
        return self.config.content_hash()

    def close(self) -> None:
        for resource in self.extra.values():
            close = getattr(resource, "close", None)
            if callable(close):
                close()
        self.sandbox.close()


def open_context(config: BuildConfig, run_id: str) -> BuildContext:
    """Start the build's shared resources: sandbox, and where configured the Lean backend,
    the LLM client (with its request cache in the output dir) and the answer checker."""
    out = config.out_dir
    sandbox = Sandbox(
        workers=config.sandbox.workers,
        timeout_s=config.sandbox.timeout_s,
        memory_mb=config.sandbox.memory_mb,
        recycle_after=config.sandbox.recycle_after,
    )
    ctx = BuildContext(config, out, run_id, Catalog(out), sandbox)
    try:
        if "formalize" in config.generators:
            from verifiers.lean import make_lean_backend

            # One backend per build: a REPL start re-imports Mathlib, far too slow per batch.
            ctx.extra["lean"] = make_lean_backend(config.lean)
        if config.llm.configured:
            from generators.llm import LLMClient
            from verifiers.answers import AnswerChecker

            ctx.extra["llm"] = LLMClient(config.llm, config.api_key(), out / LLM_CACHE_NAME)
            ctx.extra["checker"] = AnswerChecker()
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


def load_seeds(config: BuildConfig, ctx: BuildContext) -> tuple[list[Seed], list[Record]]:
    """Seeds for this build and the rejections found while reading and decoupling them.

    Dataset seeds are decoupled offline from their calculator annotations; with an LLM
    configured, the seeds that path cannot handle get one LLM decoupling attempt.
    """
    if config.seeds is None:
        seeds = bundled_seeds()
        return (seeds[: config.max_seeds] if config.max_seeds else seeds), []
    from generators.decouple_check import decouple_many
    from generators.seeds.readers import read_seeds

    read: list[Seed] = []
    rejected: list[Record] = []
    for item in read_seeds(config.seeds, config.max_seeds):
        (read if isinstance(item, Seed) else rejected).append(item)
    templated: list[Seed] = []
    undecoupled: list[tuple[Seed, str, str]] = []
    for seed, outcome in decouple_many(read, ctx.sandbox):
        if isinstance(outcome, SeedSpec):
            templated.append(seed.model_copy(update={"spec": outcome}))
        else:
            undecoupled.append((seed, outcome.reason, outcome.detail))
    llm = ctx.extra.get("llm")
    if llm is not None and undecoupled:
        from generators.llm_decouple import decouple_with_llm

        seeds_left = [seed for seed, _, _ in undecoupled]
        for seed, result in zip(
            seeds_left,
            decouple_with_llm(seeds_left, llm, ctx.sandbox, ctx.extra["checker"]),
            strict=True,
        ):
            if isinstance(result, SeedSpec):
                templated.append(seed.model_copy(update={"spec": result}))
            else:
                rejected.append(result)
    else:
        rejected.extend(
            Rejection(
                "decouple",
                reason,
                detail,
                {"seed_id": s.id, "source": s.source, "line": s.line, "question": s.question},
            )
            for s, reason, detail in undecoupled
        )
    order = {seed.id: i for i, seed in enumerate(read)}
    templated.sort(key=lambda seed: order[seed.id])
    return templated, rejected


def check_seed_source(source: str, max_seeds: int | None) -> None:
    """Make sure a seed source can be read and holds at least one usable seed.

    Reads only up to the first usable row: later malformed rows become rejections during
    the build, this is the cheap up-front check that the source is a seed source at all.
    Failure modes: InputFileError from the reader (missing file, not JSONL, unreadable
    Parquet, unknown dataset), or when no row at all is a usable seed (the first rejection
    names file and line).
    """
    from generators.seeds.readers import read_seeds

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
    for generator in ctx.config.generators:
        planner = PLANNERS.get(generator)
        if planner is None:
            continue
        units, planning_rejections = planner(ctx)
        rejected.extend(planning_rejections)
        batches.extend(pack_batches(units, generator, ctx.config.batch_size, len(batches)))
    if rejected:
        batches.append(Batch(len(batches), "read_seeds", records=tuple(rejected)))
    return batches


def _per_seed_units(ctx: BuildContext, count: int) -> list[Unit]:
    return [(i, 0, count) for i, seed in enumerate(ctx.seeds) if seed.spec is not None]


def _plan_infinitymath(ctx: BuildContext) -> tuple[list[Unit], list[Record]]:
    return _per_seed_units(ctx, ctx.config.variants), []


def _plan_mugglemath(ctx: BuildContext) -> tuple[list[Unit], list[Record]]:
    return _per_seed_units(ctx, ctx.config.mugglemath_variants), []


def _plan_mathscale(ctx: BuildContext) -> tuple[list[Unit], list[Record]]:
    """Build (or extend) the concept graph, persist it, and plan the walks.

    The graph lives in OUT/concept_graph and is reused by later builds in the same directory;
    with an LLM, concepts come from extraction (each seed asked once, cached), else from the
    seeds' own tags.
    """
    from generators.concept_graph import ConceptGraph
    from generators.mathscale import extract_concepts, graph_from_seeds, plan_mathscale
    from storage.concept_graph_store import (
        CONCEPT_GRAPH_DIR,
        load_concept_graph,
        save_concept_graph,
    )

    graph_dir = ctx.out / CONCEPT_GRAPH_DIR
    graph = load_concept_graph(graph_dir) or ConceptGraph()
    rejected: list[Record] = []
    llm = ctx.extra.get("llm")
    if llm is not None:
        # Rejections of the extraction step are reported under the generator's own name.
        extraction = Stage()
        extraction.name = "mathscale"
        rejected.extend(extract_concepts(llm, ctx.seeds, graph, extraction))
    else:
        graph_from_seeds(ctx.seeds, graph)
    ctx.extra["concept_graph"] = graph
    n = ctx.config.mathscale_samples
    try:
        plan_mathscale(graph, n)
    except ConfigError as exc:
        # e.g. dataset seeds that all failed decoupling: nothing to walk, say so, go on.
        return [], [*rejected, Rejection("mathscale", "empty_concept_graph", str(exc), {})]
    save_concept_graph(graph, graph_dir)
    step = max(1, ctx.config.batch_size)
    return [(None, start, min(start + step, n)) for start in range(0, n, step)], rejected


Planner = Callable[[BuildContext], tuple[list[Unit], list[Record]]]
PLANNERS: dict[str, Planner] = {
    "infinitymath": _plan_infinitymath,
    "mugglemath": _plan_mugglemath,
    "mathscale": _plan_mathscale,
}


# -- running ----------------------------------------------------------------------------------


def source_stage(ctx: BuildContext, generator: str) -> Stage:
    """The generator stage for a batch: the LLM-driven variant when an LLM is configured."""
    cfg, llm, checker = ctx.config, ctx.extra.get("llm"), ctx.extra.get("checker")
    if generator == "infinitymath":
        return InstantiateVariants(ctx.sandbox, global_seed=cfg.seed, config_hash=ctx.config_hash)
    if generator == "mugglemath":
        from generators.mugglemath import MuggleMathOffline
        from generators.mugglemath_llm import MuggleMathLLM

        if llm is not None:
            return MuggleMathLLM(
                llm, ctx.sandbox, checker, cfg.llm, cfg.seed, config_hash=ctx.config_hash
            )
        return MuggleMathOffline(ctx.sandbox, cfg.seed, pool=ctx.seeds, config_hash=ctx.config_hash)
    if generator == "mathscale":
        from generators.mathscale import MathScaleLLM, MathScaleOffline

        graph = ctx.extra["concept_graph"]
        if llm is not None:
            return MathScaleLLM(
                llm, ctx.sandbox, checker, graph, cfg.seed, config_hash=ctx.config_hash
            )
        return MathScaleOffline(
            ctx.sandbox, graph, ctx.seeds, cfg.seed, config_hash=ctx.config_hash
        )
    raise KeyError(generator)


def derived_stages(ctx: BuildContext) -> list[Stage]:
    """RISE / formalize stages selected in the config, in a fixed order.

    They see every record of the batch after ExecVerifier, so they only ever start from
    Problems that were really verified.
    """
    stages: list[Stage] = []
    llm = ctx.extra.get("llm")
    if "rise" in ctx.config.generators:
        from generators.rise import RiseErrorInjection

        stages.append(RiseErrorInjection(ctx.config.seed, llm=llm))
    if "formalize" in ctx.config.generators:
        from generators.formalize import Formalize

        stages.append(Formalize(ctx.extra.get("lean"), seed=ctx.config.seed))
        if llm is not None:
            from generators.formalize_language import FormalizeFromLanguage

            stages.append(FormalizeFromLanguage(llm, ctx.extra.get("lean"), ctx.config.seed))
    return stages


def batch_stages(ctx: BuildContext, batch: Batch) -> list[Stage]:
    if not batch.units:
        return []
    return [
        source_stage(ctx, batch.generator),
        ExecVerifier(ctx.sandbox),
        ExactDedup(),
        *derived_stages(ctx),
    ]


def run_batch(ctx: BuildContext, batch: Batch, done: set[int] | None = None) -> BatchSummary:
    """Run one batch end to end unless the manifest says it is finished.

    Shards are written before the manifest row, so a crash in between only means the batch
    runs again and rewrites the same shard names with the same rows.
    """
    finished = done if done is not None else ctx.catalog.finished_batches()
    if batch.number in finished:
        return BatchSummary(batch.number, batch.generator, skipped=True)
    start = time.perf_counter()
    stages = batch_stages(ctx, batch)
    records: Iterable[Record] = (
        run_pipeline(stages, batch.tasks(ctx.seeds)) if stages else iter(batch.records)  # type: ignore[arg-type]
    )
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
            yield record

    shards = write_batch_shards(ctx.out, batch.number, counted(records))
    stats: Counter[str] = Counter()
    for stage in stages:
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
    """Read (and decouple) the seeds, claim the output dir, plan; returns the batches and the
    numbers of those already finished. Seeds are read before anything is written, so bad
    input leaves the output directory untouched."""
    config = ctx.config
    ctx.seeds, pre_rejected = load_seeds(config, ctx)
    unreadable = [r for r in pre_rejected if isinstance(r, Rejection) and r.stage == "read_seeds"]
    ctx.extra["seed_problems"] = {
        "unreadable": len(unreadable),
        "first": unreadable[0].detail if unreadable else None,
        "undecoupled": sum(
            1 for r in pre_rejected if isinstance(r, Rejection) and r.stage != "read_seeds"
        ),
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
        "llm": dict(ctx.extra["llm"].stats) if "llm" in ctx.extra else {},
        "duplicates_dropped": dropped,
        "seed_problems": ctx.extra.get("seed_problems", {}),
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
    return report
