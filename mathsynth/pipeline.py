"""What a build does, independent of Prefect: plan batches, assemble stages, run one batch.

This is the executor layer (datatrove's LocalPipelineExecutor, in spirit): it turns a config
into a deterministic list of batches and runs a batch as a lazy chain of stages, writing one
shard per output table and then marking the batch done in the catalog. `flows/` wraps
`run_batch` in Prefect tasks; `bench/` calls it directly to measure Prefect's overhead.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from generators.infinitymath import InstantiateVariants
from generators.seeds.spec import Seed, SeedTask, bundled_seeds
from mathsynth.config import BuildConfig
from mathsynth.records import Record
from mathsynth.stage import Stage, run_pipeline
from storage.catalog import Catalog
from storage.shards import write_batch_shards
from verifiers.exec_check import ExecVerifier
from verifiers.sandbox import Sandbox

SOURCE_GENERATORS = ("infinitymath", "mugglemath", "mathscale")
DERIVED_GENERATORS = ("rise", "formalize")


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
    except BaseException:
        ctx.close()
        raise
    return ctx


# -- planning ---------------------------------------------------------------------------------


def load_seeds(config: BuildConfig, ctx: BuildContext) -> tuple[list[Seed], list[Record]]:
    """Seeds for this build and the rejections found while reading them."""
    if config.seeds is None:
        seeds = bundled_seeds()
        return (seeds[: config.max_seeds] if config.max_seeds else seeds), []
    raise NotImplementedError("dataset seeds are wired in by the readers module")


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


def plan_batches(config: BuildConfig, seeds: list[Seed], pre_rejected: list[Record]) -> list[Batch]:
    """Every batch of the build, numbered in a fixed order: the plan of a rerun is identical."""
    batches: list[Batch] = []
    for generator in config.generators:
        planner = PLANNERS.get(generator)
        if planner is None:
            continue
        units = planner(config, seeds)
        batches.extend(pack_batches(units, generator, config.batch_size, len(batches)))
    if pre_rejected:
        batches.append(Batch(len(batches), "read_seeds", records=tuple(pre_rejected)))
    return batches


def _plan_infinitymath(config: BuildConfig, seeds: list[Seed]) -> list[Unit]:
    return [(i, 0, config.variants) for i, seed in enumerate(seeds) if seed.spec is not None]


Planner = Callable[[BuildConfig, list[Seed]], list[Unit]]
PLANNERS: dict[str, Planner] = {"infinitymath": _plan_infinitymath}


# -- running ----------------------------------------------------------------------------------


def source_stage(ctx: BuildContext, generator: str) -> Stage:
    if generator == "infinitymath":
        return InstantiateVariants(
            ctx.sandbox, global_seed=ctx.config.seed, config_hash=ctx.config_hash
        )
    raise KeyError(generator)


def derived_stages(ctx: BuildContext) -> list[Stage]:
    """RISE / formalize stages selected in the config, in a fixed order.

    They see every record of the batch after ExecVerifier, so they only ever start from
    Problems that were really verified.
    """
    stages: list[Stage] = []
    if "rise" in ctx.config.generators:
        from generators.rise import RiseErrorInjection

        stages.append(RiseErrorInjection(ctx.config.seed, llm=ctx.extra.get("llm")))
    if "formalize" in ctx.config.generators:
        from generators.formalize import Formalize

        stages.append(Formalize(ctx.extra.get("lean"), seed=ctx.config.seed))
    return stages


def batch_stages(ctx: BuildContext, batch: Batch) -> list[Stage]:
    if not batch.units:
        return []
    return [source_stage(ctx, batch.generator), ExecVerifier(ctx.sandbox), *derived_stages(ctx)]


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

    def counted(stream: Iterable[Record]) -> Iterator[Record]:
        for record in stream:
            counts[record.table] += 1
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
    return BatchSummary(batch.number, batch.generator, False, seconds, dict(counts), dict(stats))
