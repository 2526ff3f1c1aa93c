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

from mathsynth import __version__
from mathsynth.generators.common.instantiate import Draft, render_variant, sandbox_job
from mathsynth.generators.common.sampling import UnsatisfiableSpecError, sample_values
from mathsynth.generators.infinitymath import LLM_DECOUPLING
from mathsynth.records import Problem, Record, content_id
from mathsynth.seeds import Seed, SeedSpec, SeedTask
from mathsynth.stage import SourceStage
from mathsynth.variables import encode_variables
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob, SandboxResult


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


class InstantiateVariants(SourceStage):
    """Source generator: SeedTasks of templated seeds → variant Problems (or Rejections)."""

    name = "infinitymath"

    def __init__(
        self,
        *,
        sandbox: Sandbox,
        seed: int = 0,
        config_hash: str = "",
        max_attempts: int = 20,
        generator: str = "infinitymath",
        method: str = "instantiate",
    ) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.global_seed = seed
        self.config_hash = config_hash
        self.max_attempts = max_attempts
        self.generator = generator
        self.method = method

    def run(self, tasks: Iterable[SeedTask]) -> Iterator[Record]:
        streams: dict[str, _SeedStream] = {}
        for task in tasks:
            seed = task.seed
            if seed is None:
                continue
            if seed.spec is None:
                yield self.reject(
                    {"seed_id": seed.id, "index": task.index},
                    "not_templated",
                    f"seed {seed.id} has no template to instantiate",
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
        outcome = render_variant(stream.spec, values, result, salt=self.global_seed)
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
            yield self.reject(
                {
                    "seed_id": stream.seed.id,
                    "variant": stream.next_variant,
                    "failures": dict(stream.failures),
                },
                reason,
                f"no valid draw in {self.max_attempts} attempts; last: {stream.last_detail}",
            )
        stream.next_variant += 1
        stream.attempts = 0
        stream.failures.clear()

    def _problem(self, stream: _SeedStream, draft: Draft) -> Problem:
        spec = stream.spec
        provenance: dict[str, Any] = {
            "variant": stream.next_variant,
            "global_seed": self.global_seed,
            "config_hash": self.config_hash,
            "pipeline_version": __version__,
            "seed_source": stream.seed.source,
            "model": None,
            "answer_type": spec.answer_type,
            "text": draft.text_choices,
        }
        decoupling = stream.seed.meta.get(LLM_DECOUPLING)
        if decoupling is not None:
            # The template came from a model: which one, with which prompts (its cost was
            # counted once, when the seed was decoupled, not per variant).
            provenance["decoupling"] = decoupling
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
            provenance=provenance,
        )


def _values_key(values: dict[str, Any]) -> str:
    return repr(sorted(values.items()))
