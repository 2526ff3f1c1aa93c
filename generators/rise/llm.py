"""RISE with an LLM: self-edited steps and sampled correct-vs-wrong solutions.

Self-edit (RISE's prompt): the model rewrites one step of a verified solution to contain a
given error type without admitting it. RISE's filters drop replies that mention a mistake /
incorrect / wrong / error and replies that change nothing; we also drop multi-line replies and
keep an edit only when `ErrorInjector.confirm_rewrite` proves it wrong by recomputation: the
step's results change (with or without false arithmetic), the change is carried through the
later steps to a different final answer, and every changed value passes the same plausibility
and formatting rules as the rule-based edits.

Sampled pairs: the model solves the problem `samples` times. A chosen sample ends on the
verified answer and every equation in it recomputes exactly (a right answer reached through
wrong arithmetic is no example to prefer); a rejected one ends on a different number, so it is
wrong by exact comparison with the verified answer. Of the (chosen, rejected) combinations,
in sample order, the first whose texts write numbers the same way is paired
(`formatting.NumberStyle.signature`: padding, thousands separators, money signs, the final
answer's look), so number formatting cannot tell the sides apart. Answers are compared as exact
numbers; a problem whose answer is not a number gets none ("answer_not_numeric").
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator
from typing import Any

from mathsynth.generators.common.annotations import remove_calculator_annotations
from mathsynth.generators.llm import (
    ChatRequest,
    Completion,
    LLMClient,
    LLMRequestError,
    usage_provenance,
)
from mathsynth.generators.llm.stage_stats import complete_counted
from mathsynth.generators.rise.formatting import signature
from mathsynth.generators.rise.inject import ErrorInjector
from mathsynth.generators.rise.plausible import Dropped
from mathsynth.generators.rise.spans import diff_spans
from mathsynth.generators.rise.steps import find_answer, find_equations
from mathsynth.numbers import parse_number
from mathsynth.records import (
    PreferencePair,
    Problem,
    Record,
    Verification,
    as_dict,
    content_id,
)
from mathsynth.stage import RecordStage

# The error types a self-edit asks for; their wording is in the prompt template
# (generators/rise/prompts/self_edit.j2), beside the sampled-solution prompt (sample.j2).
ERROR_TYPES = (
    "change_number",
    "wrong_substitution",
    "operator_swap",
    "delete_term",
    "swap_terms",
)
SELF_EDIT_KIND = "rise.self_edit"
SAMPLE_KIND = "rise.sample"

# RISE's filter: a self-edit that admits its error teaches the model nothing.
_ADMITS_ERROR = re.compile(r"\b(mistakes?|incorrect(ly)?|wrong(ly)?|errors?|erroneous)\b", re.I)


class RiseSelfEdit(RecordStage):
    """Derived stage: LLM self-edit pairs and sampled-solution pairs for verified Problems.

    Passes every record through. Verified Problems are buffered `batch_size` at a time so
    their requests go to the LLM concurrently; each buffered record is yielded, followed by
    its pairs and Rejection(stage="rise") rows for what was dropped (reason names the filter:
    "admits_error", "unchanged", "multi_line", "unconfirmed" (the detail names the rule, also
    counted as `dropped:<rule>`), "no_sampled_contrast", "format_mismatch",
    "answer_not_numeric", "llm_*").
    """

    name = "rise"
    requires = (("openai", "openai[aiohttp]"),)

    def __init__(
        self,
        *,
        llm: LLMClient,
        seed: int = 0,
        samples: int = 4,
        temperature: float = 0.9,
        batch_size: int = 64,
    ) -> None:
        super().__init__()
        self.seed = seed
        self.llm = llm
        self.samples = samples
        self.temperature = temperature
        self.batch_size = batch_size

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        buffer: list[Record] = []
        for record in records:
            buffer.append(record)
            if sum(_wants_pairs(r) for r in buffer) >= self.batch_size:
                yield from self._flush(buffer)
                buffer = []
        yield from self._flush(buffer)

    def _flush(self, buffer: list[Record]) -> Iterator[Record]:
        problems = [r for r in buffer if isinstance(r, Problem) and _wants_pairs(r)]
        plans = [self._plan(p) for p in problems]
        requests = [req for plan in plans for req in plan.requests()]
        results = iter(complete_counted(self.llm, self, requests))
        extra: dict[str, list[Record]] = {}
        for problem, plan in zip(problems, plans, strict=True):
            edit = next(results) if plan.step is not None else None
            sampled = next(results)
            extra[problem.id] = [
                *self._self_edit(problem, plan, edit),
                *self._sampled(problem, sampled),
            ]
        for record in buffer:
            yield record
            if isinstance(record, Problem):
                yield from extra.pop(record.id, [])

    def _plan(self, problem: Problem) -> _Plan:
        solution = remove_calculator_annotations(problem.solution)
        injector = ErrorInjector(problem.question, solution, problem.answer)
        rng = random.Random(int(content_id(self.seed, "rise.self_edit", problem.id), 16))
        steps = [i for i in range(injector.parsed.step_count) if injector.parsed.equations[i]]
        step = rng.choice(steps) if steps else None
        error_type = rng.choice(sorted(ERROR_TYPES))
        return _Plan(self, problem, solution, injector, step, error_type)

    def _self_edit(
        self, problem: Problem, plan: _Plan, result: list[Completion] | LLMRequestError | None
    ) -> list[Record]:
        if result is None or plan.step is None:
            return []
        if isinstance(result, LLMRequestError):
            return [result.to_rejection(self, as_dict(problem))]
        completion = result[0]
        reply = completion.text.strip().strip("`").strip()
        original = plan.injector.parsed.lines[plan.step]
        if _ADMITS_ERROR.search(reply) and not _ADMITS_ERROR.search(original):
            return [
                self.reject(
                    {**as_dict(problem), "raw_reply": reply},
                    "admits_error",
                    "self-edit dropped: admits_error",
                )
            ]
        if " ".join(reply.split()) == " ".join(original.split()):
            return [
                self.reject(
                    {**as_dict(problem), "raw_reply": reply},
                    "unchanged",
                    "self-edit dropped: unchanged",
                )
            ]
        if "\n" in reply:
            return [
                self.reject(
                    {**as_dict(problem), "raw_reply": reply},
                    "multi_line",
                    "self-edit dropped: multi_line",
                )
            ]
        try:
            found = plan.injector.confirm_rewrite(plan.step, reply, "llm_self_edit")
        except Dropped as dropped:
            self.stat_update(f"dropped:{dropped.reason}")
            return [
                self.reject(
                    {**as_dict(problem), "raw_reply": reply},
                    "unconfirmed",
                    f"self-edit dropped: unconfirmed ({dropped})",
                )
            ]
        self.stat_update("pairs.llm_self_edit")
        return [
            PreferencePair(
                source_id=problem.id,
                prompt_text=problem.question,
                chosen_text=plan.solution,
                rejected_text=found.rejected,
                spans=diff_spans(plan.solution, found.rejected),
                error_type="llm_self_edit",
                edit_start=found.edit_start,
                edit_end=found.edit_end,
                step_index=found.step_index,
                verification=Verification("verified", "recompute", found.detail),
                provenance={
                    "method": "llm_self_edit",
                    "generator": self.name,
                    "source_generator": problem.generator,
                    "requested_error": plan.error_type,
                    "consequence": found.consequence,
                    "original_step": found.original_step,
                    "edited_step": found.edited_step,
                    "answer_before": found.answer_before,
                    "answer_after": found.answer_after,
                    **usage_provenance([completion]),
                },
            )
        ]

    def _sampled(
        self, problem: Problem, result: list[Completion] | LLMRequestError
    ) -> list[Record]:
        if isinstance(result, LLMRequestError):
            return [result.to_rejection(self, as_dict(problem))]
        gold = _number(problem.answer)
        if gold is None:
            return [self.reject(problem, "answer_not_numeric", f"answer {problem.answer!r}")]
        texts = [(c, remove_calculator_annotations(c.text.strip())) for c in result]
        right = [(c, t) for c, t in texts if _final_answer(t) == gold and _recomputes(t)]
        wrong = [(c, t) for c, t in texts if (a := _final_answer(t)) is not None and a != gold]
        if not right or not wrong:
            return [
                self.reject(
                    problem, "no_sampled_contrast", f"{len(right)} right, {len(wrong)} wrong"
                )
            ]
        match = next(
            (
                (good, bad)
                for good in right
                for bad in wrong
                if signature(good[1]) == signature(bad[1])
            ),
            None,
        )
        if match is None:
            return [
                self.reject(
                    problem,
                    "format_mismatch",
                    f"no right and wrong sample write numbers alike ({len(right)} right, "
                    f"{len(wrong)} wrong)",
                )
            ]
        (good, chosen), (bad, rejected) = match
        step, start = _first_divergence(chosen, rejected)
        self.stat_update("pairs.sampled_solution")
        detail = (
            f"chosen answers {problem.answer} and every step recomputes; rejected answers "
            f"{_final_answer(rejected)}"
        )
        return [
            PreferencePair(
                source_id=problem.id,
                prompt_text=problem.question,
                chosen_text=chosen,
                rejected_text=rejected,
                spans=diff_spans(chosen, rejected),
                error_type="sampled_solution",
                edit_start=start,
                edit_end=len(rejected),
                step_index=step,
                verification=Verification("verified", "answer_match", detail),
                provenance={
                    "method": "sampled_solution",
                    "generator": self.name,
                    "source_generator": problem.generator,
                    "samples": len(result),
                    "answer_before": problem.answer,
                    "answer_after": _answer_text(rejected),
                    **usage_provenance([good, bad]),
                },
            )
        ]


class _Plan:
    """The requests for one problem: the self-edit of one step, and the sampled solutions."""

    def __init__(
        self,
        stage: RiseSelfEdit,
        problem: Problem,
        solution: str,
        injector: ErrorInjector,
        step: int | None,
        error_type: str,
    ) -> None:
        self.stage = stage
        self.problem = problem
        self.solution = solution
        self.injector = injector
        self.step = step
        self.error_type = error_type

    def requests(self) -> list[ChatRequest]:
        out = []
        prompts = self.stage.llm.prompts
        if self.step is not None:
            lines = self.injector.parsed.lines
            values = {
                "error_type": self.error_type,
                "question": self.problem.question,
                "previous": "\n".join(lines[: self.step]) or "(none)",
                "step": lines[self.step],
            }
            out.append(prompts.get(SELF_EDIT_KIND).request(values, temperature=0.0))
        out.append(
            prompts.get(SAMPLE_KIND).request(
                {"question": self.problem.question},
                n=self.stage.samples,
                temperature=self.stage.temperature,
            )
        )
        return out


def _wants_pairs(record: Record) -> bool:
    return isinstance(record, Problem) and record.verification.status == "verified"


def _number(text: str) -> Any:
    try:
        return parse_number(text.strip())
    except ValueError:
        return None


def _answer_text(text: str) -> str | None:
    lines = [line for line in text.strip().split("\n") if line.strip()]
    token = find_answer(lines[-1]) if lines else None
    return token.text if token else None


def _final_answer(text: str) -> Any:
    written = _answer_text(text)
    return parse_number(written) if written is not None else None


def _recomputes(text: str) -> bool:
    """Every `expr = value` equation in the text holds exactly (or as rounded)."""
    return all(eq.is_correct for line in text.split("\n") for eq in find_equations(line))


def _first_divergence(chosen: str, rejected: str) -> tuple[int, int]:
    """(line index, char offset in `rejected`) of the first line where the two differ."""
    offset = 0
    a, b = chosen.split("\n"), rejected.split("\n")
    for i, line in enumerate(b):
        if i >= len(a) or a[i] != line:
            return i, offset
        offset += len(line) + 1
    return len(b) - 1, max(0, len(rejected) - len(b[-1]))
