"""MathScale offline: new problems for concept sets sampled from the concept graph.

Offline, the graph comes from the bundled seeds' own concept tags and "writing a problem for
the sampled concepts" means picking the seeds that cover them best: one seed instantiated
with fresh values, or two composed (as in MuggleMath's compose) when a second seed covers
sampled concepts the first lacks and its variables can take the first one's answer.

Each task is a walk index: the walk, the seed choice and the values all come from an RNG
seeded by (global seed, index), so output never depends on batching. `concepts` records the
sampled concepts the chosen seeds really cover; the whole walk goes to provenance.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from mathsynth import __version__
from mathsynth.errors import ConfigError
from mathsynth.generators.common.compose import (
    ComposedDraft,
    Composer,
    Composition,
    compatible_slots,
)
from mathsynth.generators.common.instantiate import Draft, render_variant, sandbox_job
from mathsynth.generators.common.rounds import emit_in_order, run_in_rounds
from mathsynth.generators.common.sampling import UnsatisfiableSpecError, sample_values
from mathsynth.generators.mathscale.concept_graph import ConceptGraph, ConceptWalk, Node
from mathsynth.records import Problem, Record, content_id
from mathsynth.seeds import Seed, SeedSpec, SeedTask
from mathsynth.stage import SourceStage
from mathsynth.variables import encode_variables
from mathsynth.verifiers.sandbox import Sandbox, SandboxResult

GENERATOR = "mathscale"
METHOD = "concept_walk"


def graph_from_seeds(seeds: Iterable[Seed], graph: ConceptGraph | None = None) -> ConceptGraph:
    """Add every templated seed's topics and knowledge points (known seed ids are skipped)."""
    graph = graph if graph is not None else ConceptGraph()
    for seed in seeds:
        if seed.spec is not None:
            graph.add(seed.id, seed.spec.topics, seed.spec.knowledge_points)
    return graph


def walkable(graph: ConceptGraph) -> str | None:
    """None when concept walks can be drawn from `graph`, else why not (no topic linked to a
    knowledge point: no seed with concept tags was given)."""
    if any(kind == "topic" and graph.neighbors((kind, name), "kp") for kind, name in graph.nodes):
        return None
    return "mathscale: the concept graph is empty; no seed has concept tags"


def choose_seeds(
    graph: ConceptGraph, walk: ConceptWalk, specs: Sequence[SeedSpec], rng: random.Random
) -> tuple[SeedSpec, Composition | None, list[str]]:
    """The best-covering seed, a composition with a second seed when that covers more, and
    the sampled concepts covered. Ties go to the RNG over id-sorted seeds."""
    wanted = set(walk.nodes)

    def cover(spec: SeedSpec, among: set[Node]) -> set[Node]:
        return set(graph.concepts_of(spec.id)) & among if spec.id in graph.members else set()

    ranked = sorted(specs, key=lambda s: s.id)
    best = max(len(cover(s, wanted)) for s in ranked)
    first = rng.choice([s for s in ranked if len(cover(s, wanted)) == best])
    covered = cover(first, wanted)
    rest = wanted - covered
    composition = None
    options = []
    for other in ranked:
        gain = cover(other, rest)
        if not gain:
            continue
        options.extend(
            (len(gain), Composition(first, other, slot)) for slot in compatible_slots(first, other)
        )
        options.extend(
            (len(gain), Composition(other, first, slot)) for slot in compatible_slots(other, first)
        )
    if options:
        top = max(g for g, _ in options)
        composition = rng.choice([c for g, c in options if g == top])
        covered |= cover(composition.b if composition.a is first else composition.a, rest)
    concepts = [name for node in walk.nodes if node in covered for name in [node[1]]]
    return first, composition, concepts


@dataclass(frozen=True, slots=True)
class WalkPlan:
    """What one task will make: its walk, the seeds chosen for it and the RNG for values."""

    rng: random.Random
    walk: ConceptWalk
    first: SeedSpec
    composition: Composition | None
    concepts: list[str]


class MathScaleOffline(SourceStage):
    """Source generator: walk-index SeedTasks → Problems over sampled concept sets.

    Rejection reasons: no_valid_draw (no draw of the chosen seed passed), and the Composer's
    no_compatible_draw / compose_mismatch for two-seed problems.
    """

    name = GENERATOR

    def __init__(
        self,
        *,
        sandbox: Sandbox,
        graph: ConceptGraph,
        seeds: Iterable[Seed],
        seed: int = 0,
        attempts: int = 12,
        config_hash: str = "",
    ) -> None:
        super().__init__()
        self.sandbox = sandbox
        self.graph = graph
        self.specs = [s.spec for s in seeds if s.spec is not None and s.id in graph.members]
        self.global_seed = seed
        self.attempts = attempts
        self.config_hash = config_hash

    def run(self, tasks: Iterable[SeedTask]) -> Iterator[Record]:
        tasks = list(tasks)
        if tasks and not self.specs:
            raise ConfigError("mathscale: none of the given seeds is in the concept graph")
        plans = [self._plan(t) for t in tasks]

        singles = [(k, p) for k, p in enumerate(plans) if p.composition is None]
        draws: list[list[dict[str, Any]]] = []
        for _, plan in singles:
            try:
                draws.append([sample_values(plan.first, plan.rng) for _ in range(self.attempts)])
            except UnsatisfiableSpecError:
                draws.append([])
        candidates = [
            [sandbox_job(f"{k}:{i}", plan.first, v) for i, v in enumerate(values)]
            for (k, plan), values in zip(singles, draws, strict=True)
        ]

        def decide(j: int, results: list[SandboxResult], final: bool) -> Record | None:
            k, plan = singles[j]
            return self._single(tasks[k], plan, draws[j], results, final)

        outcomes: dict[int, Record] = {}
        chosen = run_in_rounds(self.sandbox, candidates, decide, self)
        for (k, _), record in zip(singles, chosen, strict=True):
            outcomes[k] = record

        composer = Composer(self.sandbox, self.attempts)
        pairs = [(k, p, p.composition) for k, p in enumerate(plans) if p.composition is not None]
        made = composer.run([(comp, plan.rng) for _, plan, comp in pairs])
        self.stat_update("sandbox_runs", composer.jobs_run)
        for (k, plan, comp), result in zip(pairs, made, strict=True):
            outcomes[k] = self._composed(tasks[k], plan, comp, result)

        yield from emit_in_order(self, outcomes, len(tasks))

    def _plan(self, task: SeedTask) -> WalkPlan:
        rng = random.Random(content_id(self.global_seed, GENERATOR, METHOD, task.index))
        walk = self.graph.sample_concepts(rng)
        first, composition, concepts = choose_seeds(self.graph, walk, self.specs, rng)
        return WalkPlan(rng, walk, first, composition, concepts)

    def _single(
        self,
        task: SeedTask,
        plan: WalkPlan,
        draws: list[dict[str, Any]],
        results: list[SandboxResult],
        final: bool,
    ) -> Record | None:
        last = "no draw"
        # `results` covers the draws executed so far (the rounds run a prefix first).
        for values, result in zip(draws[: len(results)], results, strict=True):
            draft = render_variant(plan.first, values, result, salt=(self.global_seed, task.index))
            if isinstance(draft, Draft):
                return self._problem(task, plan, plan.first, draft, plan.first.program)
            last = draft[1]
        if not final:
            return None
        return self.reject(_walk_record(task, plan), "no_valid_draw", f"{plan.first.id}: {last}")

    def _composed(
        self,
        task: SeedTask,
        plan: WalkPlan,
        comp: Composition,
        made: ComposedDraft | tuple[str, str],
    ) -> Record:
        if not isinstance(made, ComposedDraft):
            return self.reject(_walk_record(task, plan), *made)
        problem = self._problem(task, plan, comp.a, made, made.program)
        problem.difficulty = min(5, max(comp.a.difficulty, comp.b.difficulty) + 1)
        problem.provenance.update(
            partner=comp.b.id,
            slot=comp.slot,
            link=made.link,
            text=made.text,
            answer_type=comp.b.answer_type,
        )
        return problem

    def _problem(
        self,
        task: SeedTask,
        plan: WalkPlan,
        spec: SeedSpec,
        draft: Draft | ComposedDraft,
        program: str,
    ) -> Problem:
        return Problem(
            generator=GENERATOR,
            method=METHOD,
            seed_id=spec.id,
            parent_id=spec.id,
            question=draft.question,
            solution=draft.solution,
            answer=draft.answer,
            program=program,
            variables=encode_variables(
                draft.values if isinstance(draft, Draft) else draft.variables
            ),
            concepts=plan.concepts,
            difficulty=spec.difficulty,
            provenance={
                "index": task.index,
                "walk": plan.walk.concepts,
                "answer_type": spec.answer_type,
                **({"text": draft.text_choices} if isinstance(draft, Draft) else {}),
                "global_seed": self.global_seed,
                "config_hash": self.config_hash,
                "pipeline_version": __version__,
                "model": None,
            },
        )


def _walk_record(task: SeedTask, plan: WalkPlan) -> dict[str, Any]:
    """What a rejected walk was: its index, its concepts and the seed chosen for it."""
    return {"index": task.index, "walk": plan.walk.concepts, "seed_id": plan.first.id}
