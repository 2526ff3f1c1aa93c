"""InfinityMATH decoupling by LLM: one prompt turns a seed into a templated `SeedSpec`.

The reply carries the question template, a step-per-line solution template, a
number-independent `def solution(...)` and one VariableSpec per variable. It is accepted only
when, on the seed's own numbers, it reproduces the seed:

  1. the program runs in the sandbox, satisfies its constraints and whole-number names, and the
     templates fill (the same `render_variant` check every instantiated variant goes through);
  2. its answer equals the seed's gold answer by the answer checker;
  3. the question template filled with the defaults says what the seed says (same words, same
     numbers), so the variables really are the seed's numbers.

A reply that fails gets one repair round with the failure shown; a second failure (or an
unusable reply) becomes a Rejection carrying the raw replies. Accepted specs are then
instantiated exactly like offline ones (`generators.infinitymath.offline`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from pydantic import ValidationError

from mathsynth.generators.common.instantiate import Draft, render_variant, sandbox_job
from mathsynth.generators.llm.accounting import usage_provenance
from mathsynth.generators.llm.chat import ChatRequest, Completion, Message
from mathsynth.generators.llm.client import LLMClient
from mathsynth.generators.llm.errors import LLMRequestError, ReplyParseError
from mathsynth.generators.llm.parsing import extract_json_object
from mathsynth.generators.llm.prompts import PromptLibrary
from mathsynth.records import Rejection
from mathsynth.seeds import Seed, SeedSpec
from mathsynth.verifiers.answers import AnswerChecker
from mathsynth.verifiers.sandbox import Sandbox

STAGE = "infinitymath.llm_decouple"
REQUIRED = ("question", "solution", "program", "variables")

# The prompt templates (generators/infinitymath/prompts/): the decoupling prompt, whose reply
# schema both rounds share, and the repair turn.
DECOUPLE_KIND = "infinitymath.decouple"
REPAIR_KIND = "infinitymath.repair"


def decouple_prompt(seed: Seed, prompts: PromptLibrary | None = None) -> list[Message]:
    """The first-round conversation for `seed` (the shipped template unless `prompts`)."""
    return decouple_request(seed, prompts or PromptLibrary()).messages


def decouple_request(seed: Seed, prompts: PromptLibrary) -> ChatRequest:
    return prompts.get(DECOUPLE_KIND).request(
        {"question": seed.question, "answer": seed.answer}, temperature=0.0
    )


def repair_request(
    first: ChatRequest, reply: str, failure: str, prompts: PromptLibrary
) -> ChatRequest:
    """The first round, the model's reply, and the repair turn showing what failed."""
    return prompts.get(REPAIR_KIND).follow_up(first, reply, {"failure": failure})


class TemplateCheckError(ReplyParseError):
    """The reply parsed, but its template does not reproduce the seed on the seed's numbers.

    Reasons: those of `render_variant` (exec_error, constraint_unsatisfied, ...),
    "template_mismatch", "answer_mismatch", "answer_check_error".
    """

    prefix = ""


@dataclass(slots=True)
class _Attempt:
    """One seed's progress: the conversation so far and the latest failure, if any."""

    seed: Seed
    request: ChatRequest
    reply: str | None = None
    spec: SeedSpec | None = None
    failure: ReplyParseError | LLMRequestError | None = None
    first_reply: str | None = None
    first_failure: str | None = None
    completions: list[Completion] = field(default_factory=list)


def parse_spec(seed: Seed, reply: str) -> SeedSpec:
    """The SeedSpec a reply describes; ReplyParseError when it is not one."""
    data = extract_json_object(reply, REQUIRED)
    topics = data.get("topics") or ["arithmetic"]
    points = data.get("knowledge_points") or topics
    try:
        return SeedSpec(
            id=seed.id,
            topics=list(topics)[:2],
            knowledge_points=list(points)[:5],
            difficulty=int(data.get("difficulty") or 2),
            question=str(data["question"]),
            solution=str(data["solution"]),
            program=str(data["program"]),
            variables=data["variables"],
            constraints=list(data.get("constraints") or []),
            whole=list(data.get("whole") or []),
            answer_type=data.get("answer_type") or "int",
            answer=seed.answer,
        )
    except (ValidationError, TypeError, ValueError) as exc:
        detail = _first_error(exc)
        raise ReplyParseError("bad_fields", f"not a valid template: {detail}", reply) from None


def same_text(a: str, b: str) -> bool:
    """True when two texts have the same words and numbers of equal value ("1.50" == "1.5",
    "1,000" == "1000"); whitespace and letter case are ignored."""
    left, right = _number_split(a), _number_split(b)
    if len(left) != len(right):
        return False
    for i, (x, y) in enumerate(zip(left, right, strict=True)):
        if i % 2:  # odd parts are the numbers
            if _value(x) != _value(y):
                return False
        elif " ".join(x.lower().split()) != " ".join(y.lower().split()):
            return False
    return True


def decouple_with_llm(
    seeds: Sequence[Seed], client: LLMClient, sandbox: Sandbox, checker: AnswerChecker
) -> Iterator[SeedSpec | Rejection]:
    """A verified SeedSpec or a Rejection per seed, in seed order.

    Requests for all seeds go out together (one `complete_many` per round), so a batch costs
    two LLM round trips at most. Raises LLMUnavailableError when the endpoint is unusable.
    """
    for outcome, _ in decouple_with_llm_usage(seeds, client, sandbox, checker):
        yield outcome


def decouple_with_llm_usage(
    seeds: Sequence[Seed], client: LLMClient, sandbox: Sandbox, checker: AnswerChecker
) -> Iterator[tuple[SeedSpec | Rejection, dict[str, Any] | None]]:
    """`decouple_with_llm`, each accepted spec with the `usage_provenance` of the replies it
    came from (model, tokens, cost, prompt hashes), for the provenance of its variants."""
    attempts = [_Attempt(seed, decouple_request(seed, client.prompts)) for seed in seeds]
    _ask(client, attempts)
    _verify([a for a in attempts if a.spec is not None], sandbox, checker)
    # Only replies that arrived are worth repairing; a transport failure was already retried.
    retry = [a for a in attempts if isinstance(a.failure, ReplyParseError) and a.reply]
    for a in retry:
        assert a.failure is not None and a.reply is not None
        a.first_reply, a.first_failure = a.reply, a.failure.detail
        a.request = repair_request(a.request, a.reply, a.failure.detail, client.prompts)
        a.spec = a.failure = None
    if retry:
        _ask(client, retry)
        _verify([a for a in retry if a.spec is not None], sandbox, checker)
    for a in attempts:
        if a.failure is None and a.spec is not None:
            yield a.spec, usage_provenance(a.completions)
        else:
            yield _rejection(a), None


def _ask(client: LLMClient, attempts: list[_Attempt]) -> None:
    requests = [a.request for a in attempts]
    for attempt, result in zip(attempts, client.complete_many(requests), strict=True):
        if isinstance(result, LLMRequestError):
            attempt.failure, attempt.reply = result, None
            continue
        attempt.reply = result[0].text
        attempt.completions.append(result[0])
        try:
            attempt.spec = parse_spec(attempt.seed, attempt.reply)
        except ReplyParseError as exc:
            attempt.failure = exc


def _verify(attempts: list[_Attempt], sandbox: Sandbox, checker: AnswerChecker) -> None:
    """Execute each candidate on the seed's numbers and compare with the seed."""
    jobs, defaults = [], []
    for a in attempts:
        assert a.spec is not None
        try:
            values = a.spec.default_values()
        except (ValueError, ZeroDivisionError, ArithmeticError) as exc:
            a.failure = ReplyParseError("bad_fields", f"bad variable default ({exc})", a.reply)
            values = {}
        defaults.append(values)
        jobs.append(sandbox_job(a.seed.id, a.spec, values))
    runnable = [i for i, a in enumerate(attempts) if a.failure is None]
    results = sandbox.run([jobs[i] for i in runnable])
    drafts: list[tuple[_Attempt, Draft]] = []
    for i, result in zip(runnable, results, strict=True):
        a = attempts[i]
        assert a.spec is not None
        outcome = render_variant(a.spec, defaults[i], result)
        if isinstance(outcome, tuple):
            reason, detail = outcome
            a.failure = TemplateCheckError(
                reason, f"on the problem's own numbers: {detail}", a.reply
            )
        elif not same_text(outcome.question, a.seed.question):
            a.failure = TemplateCheckError(
                "template_mismatch",
                f"the template with its defaults reads {outcome.question!r}, "
                f"not the original problem {a.seed.question!r}",
                a.reply,
            )
        else:
            drafts.append((a, outcome))
    verdicts = checker.check_many([(a.seed.answer, d.answer) for a, d in drafts])
    for (a, draft), verdict in zip(drafts, verdicts, strict=True):
        if verdict.verdict != "correct":
            reason = "answer_mismatch" if verdict.verdict == "incorrect" else "answer_check_error"
            a.failure = TemplateCheckError(
                reason,
                f"the program gives {draft.answer} but the gold answer is {a.seed.answer}"
                f" ({verdict.detail})",
                a.reply,
            )


def _rejection(a: _Attempt) -> Rejection:
    failure = a.failure or ReplyParseError("no_reply", "no reply", None)
    record: dict[str, Any] = {"seed_id": a.seed.id, "question": a.seed.question}
    record["gold_answer"] = a.seed.answer
    if a.first_reply is not None:
        record["first_reply"] = a.first_reply
        record["first_failure"] = a.first_failure
    detail = failure.detail
    if a.first_reply is not None:
        detail = f"after one repair round: {detail}"
    return Rejection(STAGE, failure.code, detail, failure.rejected_input(record))


_NUMBER = re.compile(r"(\d[\d,]*(?:\.\d+)?)")


def _number_split(text: str) -> list[str]:
    return _NUMBER.split(text.strip())


def _value(number: str) -> Decimal | str:
    try:
        return Decimal(number.replace(",", ""))
    except InvalidOperation:
        return number


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        return f"{'.'.join(str(x) for x in first['loc'])}: {first['msg']}"
    return str(exc)
