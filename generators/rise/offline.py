"""RISE offline: one rule-based preference pair per verified Problem (`rise.inject` finds and
confirms the error)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Any

from mathsynth.generators.common.annotations import remove_calculator_annotations
from mathsynth.generators.rise.inject import ErrorInjector, InjectedError
from mathsynth.generators.rise.spans import diff_spans
from mathsynth.records import PreferencePair, Problem, Record, Rejection, Verification, content_id
from mathsynth.stage import RecordStage


class RiseErrorInjection(RecordStage):
    """Derived stage: for each verified Problem, one rule-based RISE preference pair.

    Every input record passes through unchanged. A verified Problem is followed by a
    PreferencePair, or by a Rejection(stage="rise") when it is a MATH-style problem with a LaTeX
    answer ("exact_answer": its steps are not `expr = value` arithmetic this stage can edit;
    with an LLM, self-edits and sampled pairs cover it), when its solution has no arithmetic step
    ("no_equations"), no final "The answer is N." line to get wrong ("no_final_answer"), or no
    edit passed the rules of `rise.inject` ("no_valid_edit"; the detail counts the reasons).
    Every candidate edit dropped on the way is counted in the stage stats as
    `dropped:<reason>` (the build's catalog keeps them per batch). The edit depends only on
    (seed, problem id). With an LLM, `rise.llm.RiseSelfEdit` runs after it on the same stream
    and adds self-edit and sampled-solution pairs.
    """

    name = "rise"

    def __init__(self, *, seed: int = 0) -> None:
        super().__init__()
        self.seed = seed

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            yield record
            if isinstance(record, Problem) and record.verification.status == "verified":
                yield self.pair_for(record)

    def pair_for(self, problem: Problem) -> PreferencePair | Rejection:
        """The preference pair for one verified problem, or why there is none."""
        if problem.provenance.get("answer_type") == "exact":
            return self.reject(
                problem, "exact_answer", "a LaTeX answer: no arithmetic steps to edit offline"
            )
        solution = remove_calculator_annotations(problem.solution)
        injector = ErrorInjector(problem.question, solution, problem.answer)
        if not injector.has_equations:
            return self.reject(problem, "no_equations", "no step has an `expr = value` equation")
        if not injector.has_final_answer:
            return self.reject(problem, "no_final_answer", "no final 'The answer is N.' line")
        rng = random.Random(int(content_id(self.seed, problem.id), 16))
        found = injector.inject(rng)
        for reason, count in injector.dropped.items():
            self.stat_update(f"dropped:{reason}", count)
        if found is None:
            reasons = ", ".join(f"{n} {r}" for r, n in injector.dropped.most_common())
            return self.reject(
                problem, "no_valid_edit", f"no edit passed the checks ({reasons or 'no edits'})"
            )
        self.stat_update("pairs")
        self.stat_update(f"pairs.{found.error_type}")
        self.stat_update(f"pairs.{found.consequence}")
        return PreferencePair(
            source_id=problem.id,
            prompt_text=problem.question,
            chosen_text=solution,
            rejected_text=found.rejected,
            spans=diff_spans(solution, found.rejected),
            error_type=found.error_type,
            edit_start=found.edit_start,
            edit_end=found.edit_end,
            step_index=found.step_index,
            verification=Verification("verified", "recompute", found.detail),
            provenance=self._provenance(problem, found, solution != problem.solution),
        )

    def _provenance(self, problem: Problem, found: InjectedError, stripped: bool) -> dict[str, Any]:
        return {
            "method": "rule",
            "generator": self.name,
            "source_generator": problem.generator,
            "error_type": found.error_type,
            "consequence": found.consequence,
            "edit": found.description,
            "original_step": found.original_step,
            "edited_step": found.edited_step,
            "answer_before": found.answer_before,
            "answer_after": found.answer_after,
            "calculator_annotations_removed": stripped,
            "seed": self.seed,
        }
