"""The sandbox round trip that makes a decoupled seed trustworthy.

For each decoupled seed the generated program is executed in the sandbox
  * on the original numbers: it must reproduce the gold answer, satisfy every inferred
    constraint and keep the `whole` intermediates whole (the constraints were read off this
    very computation, so a failure means the decoupler misread the seed);
  * on a few fresh draws: at least one must satisfy the constraints, otherwise InfinityMATH
    could never instantiate the seed, and each sandbox answer must equal the exact in-process
    evaluation of the same steps (two independent executions of the program agree).
Draws are pre-screened in-process with exact Fraction arithmetic so the sandbox only sees
candidates likely to pass; jobs of many seeds go to the sandbox in one batch.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from itertools import islice
from typing import Any, Protocol

from mathsynth.generators.common.annotations import AnnotationError
from mathsynth.generators.common.arithmetic import evaluate
from mathsynth.generators.common.sampling import UnsatisfiableSpecError, sample_values
from mathsynth.generators.infinitymath.decouple import DecoupleFailure, Decoupling, analyse
from mathsynth.numbers import format_answer, is_whole, parse_number
from mathsynth.records import content_id
from mathsynth.seeds import Seed, SeedSpec
from mathsynth.verifiers.sandbox import SandboxJob, SandboxResult


class JobRunner(Protocol):
    """What `decouple_many` needs from `verifiers.sandbox.Sandbox`."""

    def run(self, jobs: Iterable[SandboxJob]) -> list[SandboxResult]: ...


@dataclass(frozen=True, slots=True)
class _Plan:
    seed: Seed
    decoupling: Decoupling
    draws: list[tuple[dict[str, Any], str]]  # (values, expected answer)


def decouple_many(
    seeds: Iterable[Seed],
    sandbox: JobRunner,
    *,
    draws: int = 2,
    attempts: int = 256,
    batch_size: int = 2048,
) -> Iterator[tuple[Seed, SeedSpec | DecoupleFailure]]:
    """Decouple seeds and verify each in the sandbox; yields (seed, spec or failure) in order.

    `draws` instantiations per seed are checked, chosen from up to `attempts` random draws
    (seeded by the seed id, so results are reproducible).
    """
    iterator = iter(seeds)
    while chunk := list(islice(iterator, batch_size)):
        yield from _check_chunk(chunk, sandbox, draws, attempts)


def _check_chunk(
    seeds: list[Seed], sandbox: JobRunner, draws: int, attempts: int
) -> Iterator[tuple[Seed, SeedSpec | DecoupleFailure]]:
    outcomes: list[_Plan | DecoupleFailure] = []
    jobs: list[SandboxJob] = []
    for seed in seeds:
        result = analyse(seed)
        if isinstance(result, DecoupleFailure):
            outcomes.append(result)
            continue
        plan = _Plan(seed, result, _screened_draws(seed, result, draws, attempts))
        if not plan.draws:
            outcomes.append(
                DecoupleFailure(
                    "unsatisfiable_constraints",
                    f"none of {attempts} random draws satisfies {result.spec.constraints}",
                )
            )
            continue
        outcomes.append(plan)
        spec = result.spec
        for k, values in enumerate([spec.default_values(), *(v for v, _ in plan.draws)]):
            jobs.append(
                SandboxJob(
                    id=f"{seed.id}:{k}",
                    code=spec.program,
                    kwargs=values,
                    capture_locals=True,
                    checks=spec.constraints,
                )
            )
    results = iter(sandbox.run(jobs))
    for seed, outcome in zip(seeds, outcomes, strict=True):
        if isinstance(outcome, DecoupleFailure):
            yield seed, outcome
            continue
        original = next(results)
        variants = [next(results) for _ in outcome.draws]
        yield seed, _verdict(outcome, original, variants)


def _verdict(
    plan: _Plan, original: SandboxResult, variants: list[SandboxResult]
) -> SeedSpec | DecoupleFailure:
    spec = plan.decoupling.spec
    gold = format_answer(parse_number(spec.answer), spec.answer_type)
    problem = _problem(spec, original, gold)
    if problem is not None:
        reason = "round_trip_error" if original.status != "ok" else "round_trip_mismatch"
        return DecoupleFailure(reason, f"on the original numbers: {problem}")
    problems = [
        _problem(spec, result, expected)
        for result, (_, expected) in zip(variants, plan.draws, strict=True)
    ]
    if all(p is not None for p in problems):
        return DecoupleFailure("round_trip_mismatch", f"on a fresh draw: {problems[0]}")
    return spec


def _problem(spec: SeedSpec, result: SandboxResult, expected: str | None) -> str | None:
    """What is wrong with one sandbox run, or None when it is right."""
    if result.status != "ok":
        return f"{result.status}: {result.error}"
    if result.failed_checks:
        return f"constraints failed: {'; '.join(result.failed_checks)}"
    scope = result.locals or {}
    broken = [name for name in spec.whole if not is_whole(scope.get(name))]
    if broken:
        return f"{', '.join(broken)} not whole"
    got = format_answer(result.result, spec.answer_type)
    if got != expected:
        return f"program gives {result.result!r}, expected {expected}"
    return None


def _screened_draws(
    seed: Seed, decoupling: Decoupling, wanted: int, attempts: int
) -> list[tuple[dict[str, Any], str]]:
    """Up to `wanted` distinct draws whose exact evaluation satisfies every constraint."""
    spec = decoupling.spec
    rng = random.Random(content_id("decouple", seed.id))
    originals = spec.default_values()
    found: list[tuple[dict[str, Any], str]] = []
    seen: set[str] = set()
    for _ in range(attempts):
        try:
            values = sample_values(spec, rng)
        except UnsatisfiableSpecError:
            return found
        key = repr(sorted(values.items()))
        if values == originals or key in seen:
            continue
        seen.add(key)
        answer = _exact_answer(decoupling, values)
        if answer is not None:
            found.append((values, answer))
            if len(found) == wanted:
                break
    return found


def _exact_answer(decoupling: Decoupling, values: dict[str, Any]) -> str | None:
    """The answer of the steps on `values` when every inferred constraint holds, else None.

    Mirrors the constraints `decouple` writes into the spec: each step keeps the sign and
    the wholeness it had on the original numbers; percentages are bounded by the draw ranges.
    """
    env: dict[str, Fraction] = {k: Fraction(str(v)) for k, v in values.items()}
    try:
        for step in decoupling.steps:
            value = evaluate(step.expr, env)
            if (step.value > 0 and value <= 0) or (step.value >= 0 and value < 0):
                return None
            if is_whole(step.value) and value.denominator != 1:
                return None
            env[step.name] = value
    except AnnotationError:
        return None
    return format_answer(env[decoupling.steps[-1].name], decoupling.spec.answer_type)
