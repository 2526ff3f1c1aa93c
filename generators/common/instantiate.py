"""A templated seed instantiated with one draw of its variables: run, judged, rendered.

Every source method that fills a seed's templates with fresh numbers (InfinityMATH variants,
MuggleMath restatements and compositions, MathScale's offline problems, LLM decoupling's
round trip) goes through `render_variant`, so they all accept a draw by the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mathsynth.generators.common.templates import fill
from mathsynth.numbers import format_answer, is_whole
from mathsynth.seeds import SeedSpec
from mathsynth.verifiers.sandbox import SandboxJob, SandboxResult

ANSWER_LINE = "The answer is {answer}."


@dataclass(frozen=True, slots=True)
class Draft:
    """An accepted draw rendered into text, before it becomes a Problem."""

    question: str
    solution: str
    answer: str
    values: dict[str, Any]


def sandbox_job(job_id: str, spec: SeedSpec, values: dict[str, Any]) -> SandboxJob:
    """Run a seed's program on `values`, capturing locals for the solution template and
    checking the seed's constraints: the result `render_variant` judges."""
    return SandboxJob(
        id=job_id,
        code=spec.program,
        kwargs=values,
        capture_locals=True,
        checks=list(spec.constraints),
    )


def render_variant(
    spec: SeedSpec, values: dict[str, Any], result: SandboxResult
) -> Draft | tuple[str, str]:
    """Check one executed draw and fill the templates, or return (reason, detail).

    Reasons: exec_error / exec_timeout / exec_memory / exec_killed, constraint_unsatisfied,
    non_integer_intermediate, answer_type_mismatch, template_slot_missing.
    """
    if result.status != "ok":
        return f"exec_{result.status}", result.error or result.status
    if result.failed_checks:
        return "constraint_unsatisfied", "; ".join(result.failed_checks)
    scope: dict[str, Any] = {**(result.locals or {}), **values}
    for name in spec.whole:
        if name not in scope:
            return "template_slot_missing", f"whole-number name {name!r} is not a local"
        if not is_whole(scope[name]):
            return "non_integer_intermediate", f"{name} = {scope[name]!r} is not whole"
    answer = format_answer(result.result, spec.answer_type)
    if answer is None:
        return "answer_type_mismatch", f"{result.result!r} is not a valid {spec.answer_type}"
    try:
        question = fill(spec.question, values)
        steps = fill(spec.solution, {**scope, "answer": answer}).strip()
    except (KeyError, IndexError, ValueError) as exc:
        return "template_slot_missing", f"template slot {exc} has no value"
    solution = f"{steps}\n{ANSWER_LINE.format(answer=answer)}"
    return Draft(question, solution, answer, values)
