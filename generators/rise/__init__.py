"""RISE: preference pairs whose rejected side holds one subtle error.

- `steps`: the `expr = value` equations of a solution's steps, recomputed exactly;
- `edits`: the five rule-based error types as candidate edits of one equation;
- `inject`: choosing an edit, carrying it through later steps, confirming it is wrong;
- `offline`: one rule-based pair per verified problem;
- `llm`: self-edited steps and sampled correct-vs-wrong solutions, after the rule pairs.
"""

from __future__ import annotations

from mathsynth.registry import Method, StageContext
from mathsynth.stage import RecordStage

NAME = "rise"


def offline_stage(ctx: StageContext) -> RecordStage:
    from mathsynth.generators.rise.offline import RiseErrorInjection

    return RiseErrorInjection(seed=ctx.config.seed)


def llm_stage(ctx: StageContext) -> RecordStage:
    from mathsynth.generators.rise.llm import RiseSelfEdit

    return RiseSelfEdit(llm=ctx.llm, seed=ctx.config.seed)


METHOD = Method(name=NAME, role="derived", offline=offline_stage, llm=llm_stage)
