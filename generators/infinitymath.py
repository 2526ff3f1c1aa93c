"""InfinityMATH instantiation: many variants of a templated seed, each with fresh numbers.

A variant is a draw of the seed's variables that (1) satisfies every per-variable spec,
(2) runs `solution(**values)` in the sandbox without error, (3) passes the seed's relational
constraints, (4) keeps the `whole` intermediates whole, (5) yields an answer of the seed's
answer type, and (6) differs from the original numbers and from every earlier variant.
Failed draws are resampled up to `max_attempts` times, then the variant becomes a Rejection.

Determinism: each seed has one RNG stream (from the global seed and the seed id) and variant
k is the k-th acceptable draw of that stream. Draws are sent to the sandbox in rounds across
all seeds of the batch for throughput, but acceptance is decided in stream order, so the
output depends only on (config, seed) — never on batching.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from generators.numbers import fill, format_answer, is_whole
from generators.sampling import UnsatisfiableSpecError, sample_values
from generators.seeds.spec import Seed, SeedSpec, SeedTask
from mathsynth import __version__
from mathsynth.records import Problem, Record, Rejection, content_id
from mathsynth.stage import Stage
from mathsynth.variables import encode_variables
from verifiers.sandbox import Sandbox, SandboxJob, SandboxResult

ANSWER_LINE = "The answer is {answer}."


@dataclass
class _SeedStream:
    """Progress of one seed through its RNG stream."""

    seed: Seed
    spec: SeedSpec
    wanted: set[int]
    rng: random.Random
    seen: set[str]
    next_variant: int = 0
    attempts: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    last_detail: str = ""

    @property
    def done(self) -> bool:
        return self.next_variant > max(self.wanted)


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


class InstantiateVariants(Stage):
    """Source generator: SeedTasks of templated seeds → variant Problems (or Rejections)."""

    name = "infinitymath"

    def __init__(
        self,
        sandbox: Sandbox,
        *,
        global_seed: int = 0,
        config_hash: str = "",
        max_attempts: int = 20,
        generator: str = "infinitymath",
        method: str = "instantiate",
    ) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.global_seed = global_seed
        self.config_hash = config_hash
        self.max_attempts = max_attempts
        self.generator = generator
        self.method = method

    def run(self, records: Iterable[SeedTask]) -> Iterator[Record]:  # type: ignore[override]
        streams: dict[str, _SeedStream] = {}
        for task in records:
            seed = task.seed
            if seed is None:
                continue
            if seed.spec is None:
                self.stat_update("rejected:not_templated")
                yield Rejection(
                    self.name,
                    "not_templated",
                    f"seed {seed.id} has no template to instantiate",
                    {"seed_id": seed.id, "index": task.index},
                )
                continue
            stream = streams.get(seed.id)
            if stream is None:
                stream = streams[seed.id] = self._new_stream(seed, seed.spec)
            stream.wanted.add(task.index)
        yield from self._instantiate(list(streams.values()))

    def _new_stream(self, seed: Seed, spec: SeedSpec) -> _SeedStream:
        rng = random.Random(content_id(self.global_seed, self.generator, self.method, seed.id))
        original = _values_key(encode_variables(spec.default_values()))
        return _SeedStream(seed, spec, set(), rng, {original})

    def _instantiate(self, streams: list[_SeedStream]) -> Iterator[Record]:
        active = [s for s in streams if s.wanted]
        while active:
            candidates: list[tuple[_SeedStream, dict[str, Any]]] = []
            jobs: list[SandboxJob] = []
            for stream in active:
                for values in self._draw_round(stream):
                    candidates.append((stream, values))
                    jobs.append(sandbox_job(f"{stream.seed.id}:{len(jobs)}", stream.spec, values))
            results = self.sandbox.run(jobs) if jobs else []
            self.stat_update("sandbox_runs", len(jobs))
            for (stream, values), result in zip(candidates, results, strict=True):
                if not stream.done:
                    yield from self._consider(stream, values, result)
            active = [s for s in active if not s.done]

    def _draw_round(self, stream: _SeedStream) -> list[dict[str, Any]]:
        """Next draws of this stream: enough to finish with headroom for failures."""
        remaining = max(stream.wanted) + 1 - stream.next_variant
        count = min(remaining + remaining // 2 + 4, 4096)
        try:
            return [sample_values(stream.spec, stream.rng) for _ in range(count)]
        except UnsatisfiableSpecError as exc:
            stream.failures["unsatisfiable_spec"] += self.max_attempts
            stream.last_detail = str(exc)
            # Every remaining variant fails the same way: reject them now.
            stream.attempts = self.max_attempts
            return []

    def _consider(
        self, stream: _SeedStream, values: dict[str, Any], result: SandboxResult
    ) -> Iterator[Record]:
        outcome = render_variant(stream.spec, values, result)
        if isinstance(outcome, Draft):
            key = _values_key(encode_variables(values))
            if key in stream.seen:
                outcome = ("duplicate_values", "same numbers as an earlier variant")
            else:
                stream.seen.add(key)
        if isinstance(outcome, Draft):
            if stream.next_variant in stream.wanted:
                self.stat_update("accepted")
                yield self._problem(stream, outcome)
            stream.next_variant += 1
            stream.attempts = 0
            stream.failures.clear()
            return
        reason, detail = outcome
        self.stat_update(f"resampled:{reason}")
        stream.failures[reason] += 1
        stream.last_detail = detail
        stream.attempts += 1
        if stream.attempts >= self.max_attempts:
            yield from self._give_up(stream)

    def _give_up(self, stream: _SeedStream) -> Iterator[Record]:
        reason = stream.failures.most_common(1)[0][0] if stream.failures else "no_valid_draw"
        if stream.next_variant in stream.wanted:
            self.stat_update(f"rejected:{reason}")
            yield Rejection(
                self.name,
                reason,
                f"no valid draw in {self.max_attempts} attempts; last: {stream.last_detail}",
                {
                    "seed_id": stream.seed.id,
                    "variant": stream.next_variant,
                    "failures": dict(stream.failures),
                },
            )
        stream.next_variant += 1
        stream.attempts = 0
        stream.failures.clear()

    def _problem(self, stream: _SeedStream, draft: Draft) -> Problem:
        spec = stream.spec
        return Problem(
            generator=self.generator,
            method=self.method,
            seed_id=stream.seed.id,
            parent_id=stream.seed.id,
            question=draft.question,
            solution=draft.solution,
            answer=draft.answer,
            program=spec.program,
            variables=encode_variables(draft.values),
            concepts=spec.concepts,
            difficulty=spec.difficulty,
            provenance={
                "variant": stream.next_variant,
                "global_seed": self.global_seed,
                "config_hash": self.config_hash,
                "pipeline_version": __version__,
                "seed_source": stream.seed.source,
                "model": None,
            },
        )


def _values_key(values: dict[str, Any]) -> str:
    return repr(sorted(values.items()))


def plan_variants(
    seeds: Iterable[Seed], variants: int, generator: str = "infinitymath"
) -> list[SeedTask]:
    """`variants` tasks per templated seed, seed by seed (the flow keeps a seed in one batch)."""
    return [
        SeedTask(generator=generator, seed=seed, index=i) for seed in seeds for i in range(variants)
    ]
