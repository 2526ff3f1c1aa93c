"""MuggleMath: query augmentation of seed problems.

- `offline`: the rewrites a seed's program allows by rule (change numbers, percent/fraction
  restatement, composing two seeds), every number computed in the sandbox;
- `llm`: all five rewrite strategies by LLM, kept by k-path self-agreement.
"""

from __future__ import annotations

from mathsynth.registry import Method, Plan, StageContext
from mathsynth.stage import SourceStage

NAME = "mugglemath"


def plan(ctx: StageContext) -> Plan:
    """`mugglemath_variants` tasks per templated seed, one unit per seed."""
    count = ctx.config.mugglemath_variants
    return Plan([(i, 0, count) for i, seed in enumerate(ctx.seeds) if seed.spec is not None])


def offline_stage(ctx: StageContext) -> SourceStage:
    from mathsynth.generators.mugglemath.offline import MuggleMathOffline

    return MuggleMathOffline(
        sandbox=ctx.sandbox, seed=ctx.config.seed, pool=ctx.seeds, config_hash=ctx.config_hash
    )


def llm_stage(ctx: StageContext) -> SourceStage:
    from mathsynth.generators.mugglemath.llm import MuggleMathLLM

    return MuggleMathLLM(
        llm=ctx.llm,
        sandbox=ctx.sandbox,
        checker=ctx.checker,
        settings=ctx.config.llm,
        seed=ctx.config.seed,
        config_hash=ctx.config_hash,
    )


METHOD = Method(name=NAME, role="source", offline=offline_stage, llm=llm_stage, plan=plan)
