"""InfinityMATH: number-decoupled programs, instantiated into unlimited variants.

- `offline`: `InstantiateVariants`, the source stage (fresh numbers for a templated seed);
- `llm`: decoupling by LLM, for dataset seeds the offline decoupler cannot handle;
- `decouple`, `mentions`, `decouple_check`: the offline decoupler (GSM8K calculator
  annotations → template + program) and its sandbox round trip.

The same stage serves offline and LLM builds: the LLM's part is turning seeds into templates.
"""

from __future__ import annotations

from mathsynth.records import Record, Rejection
from mathsynth.registry import Method, Plan, StageContext
from mathsynth.seeds import Seed, SeedSpec
from mathsynth.stage import SourceStage

NAME = "infinitymath"
# Seed.meta key of an LLM-decoupled seed's usage_provenance (read by the offline stage).
LLM_DECOUPLING = "llm_decoupling"


def plan(ctx: StageContext) -> Plan:
    """`variants` tasks per templated seed, one unit per seed (a seed's variants share a
    batch, so their numbers are deduplicated deterministically)."""
    count = ctx.config.variants
    return Plan([(i, 0, count) for i, seed in enumerate(ctx.seeds) if seed.spec is not None])


def offline_stage(ctx: StageContext) -> SourceStage:
    from mathsynth.generators.infinitymath.offline import InstantiateVariants

    return InstantiateVariants(
        sandbox=ctx.sandbox, seed=ctx.config.seed, config_hash=ctx.config_hash
    )


def template_seeds(ctx: StageContext, seeds: list[Seed]) -> tuple[list[Seed], list[Record]]:
    """Dataset seeds → templated seeds: offline from calculator annotations (checked in the
    sandbox); with an LLM configured, one LLM decoupling attempt for the rest. Seeds neither
    path can template come back as Rejections (stage `decouple` or the LLM stage's)."""
    from mathsynth.generators.infinitymath.decouple_check import decouple_many

    templated: list[Seed] = []
    rejected: list[Record] = []
    left: list[tuple[Seed, str, str]] = []
    for seed, outcome in decouple_many(seeds, ctx.sandbox):
        if isinstance(outcome, SeedSpec):
            templated.append(seed.model_copy(update={"spec": outcome}))
        else:
            left.append((seed, outcome.reason, outcome.detail))
    if ctx.llm is not None and left:
        from mathsynth.generators.infinitymath.llm import decouple_with_llm_usage

        todo = [seed for seed, _, _ in left]
        results = decouple_with_llm_usage(todo, ctx.llm, ctx.sandbox, ctx.checker)
        for seed, (result, usage) in zip(todo, results, strict=True):
            if isinstance(result, SeedSpec):
                # Its variants' provenance says which model and prompts made the template.
                meta = {**seed.meta, LLM_DECOUPLING: usage}
                templated.append(seed.model_copy(update={"spec": result, "meta": meta}))
            else:
                rejected.append(result)
        return templated, rejected
    for seed, reason, detail in left:
        record = {"seed_id": seed.id, "source": seed.source, "line": seed.line}
        rejected.append(
            Rejection("decouple", reason, detail, {**record, "question": seed.question})
        )
    return templated, rejected


METHOD = Method(
    name=NAME,
    role="source",
    offline=offline_stage,
    plan=plan,
    template_seeds=template_seeds,
)
