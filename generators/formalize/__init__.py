"""Formalization: Lean 4 statements of verified problems.

- `trace` / `term`: a verified program traced symbolically into a Lean term, in the number
  type where it means what Python computed;
- `offline`: statements derived from the program, faithful by construction;
- `llm`: statements translated from the problem text (DeepSeek-Prover's loop), after the
  program-derived ones. Both are checked by the build's Lean backend when one is configured.
"""

from __future__ import annotations

from mathsynth.registry import Method, StageContext
from mathsynth.stage import RecordStage

NAME = "formalize"


def offline_stage(ctx: StageContext) -> RecordStage:
    from mathsynth.generators.formalize.offline import Formalize

    return Formalize(lean=ctx.lean, seed=ctx.config.seed)


def llm_stage(ctx: StageContext) -> RecordStage:
    from mathsynth.generators.formalize.llm import FormalizeFromLanguage

    return FormalizeFromLanguage(llm=ctx.llm, lean=ctx.lean, seed=ctx.config.seed)


METHOD = Method(name=NAME, role="derived", offline=offline_stage, llm=llm_stage, uses_lean=True)
