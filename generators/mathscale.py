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
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from generators.agreement import ReasoningPath, program_answer
from generators.compose import ComposedDraft, Composer, Composition, compatible_slots
from generators.concept_graph import ConceptGraph, ConceptWalk, Node
from generators.infinitymath import Draft, render_variant, sandbox_job
from generators.llm import (
    ChatRequest,
    Completion,
    LLMClient,
    LLMRequestError,
    ReplyParseError,
    complete_counted,
    usage_provenance,
)
from generators.llm.parsing import extract_json_object
from generators.rounds import emit_in_order, run_in_rounds
from generators.sampling import UnsatisfiableSpecError, sample_values
from generators.seeds.spec import Seed, SeedSpec, SeedTask
from mathsynth import __version__
from mathsynth.errors import ConfigError
from mathsynth.records import Problem, Record, Rejection, Verification, content_id
from mathsynth.stage import Stage
from mathsynth.variables import encode_variables
from verifiers.answers import AnswerChecker
from verifiers.sandbox import Sandbox, SandboxJob, SandboxResult

GENERATOR = "mathscale"
METHOD = "concept_walk"


def graph_from_seeds(seeds: Iterable[Seed], graph: ConceptGraph | None = None) -> ConceptGraph:
    """Add every templated seed's topics and knowledge points (known seed ids are skipped)."""
    graph = graph if graph is not None else ConceptGraph()
    for seed in seeds:
        if seed.spec is not None:
            graph.add(seed.id, seed.spec.topics, seed.spec.knowledge_points)
    return graph


def plan_mathscale(graph: ConceptGraph, n: int) -> list[SeedTask]:
    """`n` walk tasks (seed=None; the walk itself is drawn in the stage from the index).

    Failure mode: ConfigError when the graph cannot be walked (no topic with a knowledge
    point), which means no seeds with concept tags were given.
    """
    if not any(
        kind == "topic" and graph.neighbors((kind, name), "kp") for kind, name in graph.nodes
    ):
        raise ConfigError("mathscale: the concept graph is empty; no seed has concept tags")
    return [SeedTask(generator=GENERATOR, seed=None, index=i) for i in range(n)]


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


class MathScaleOffline(Stage):
    """Source generator: walk-index SeedTasks → Problems over sampled concept sets.

    Rejection reasons: no_valid_draw (no draw of the chosen seed passed), and the Composer's
    no_compatible_draw / compose_mismatch for two-seed problems.
    """

    name = GENERATOR

    def __init__(
        self,
        sandbox: Sandbox,
        graph: ConceptGraph,
        seeds: Iterable[Seed],
        seed: int = 0,
        *,
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

    def run(self, records: Iterable[SeedTask]) -> Iterator[Record]:  # type: ignore[override]
        tasks = list(records)
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
            draft = render_variant(plan.first, values, result)
            if isinstance(draft, Draft):
                return self._problem(task, plan, plan.first, draft, plan.first.program)
            last = draft[1]
        if not final:
            return None
        return self._reject(task, plan, "no_valid_draw", f"{plan.first.id}: {last}")

    def _composed(
        self,
        task: SeedTask,
        plan: WalkPlan,
        comp: Composition,
        made: ComposedDraft | tuple[str, str],
    ) -> Record:
        if not isinstance(made, ComposedDraft):
            return self._reject(task, plan, *made)
        problem = self._problem(task, plan, comp.a, made, made.program)
        problem.difficulty = min(5, max(comp.a.difficulty, comp.b.difficulty) + 1)
        problem.provenance.update(partner=comp.b.id, slot=comp.slot)
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
                "global_seed": self.global_seed,
                "config_hash": self.config_hash,
                "pipeline_version": __version__,
                "model": None,
            },
        )

    def _reject(self, task: SeedTask, plan: WalkPlan, reason: str, detail: str) -> Rejection:
        record = {"index": task.index, "walk": plan.walk.concepts, "seed_id": plan.first.id}
        return Rejection(self.name, reason, detail, record)


# --------------------------------------------------------------------------- LLM variant

CONCEPT_PROMPT = """\
Identify the mathematical topics and knowledge points a student needs for this problem.
Give 1 or 2 broad topics (e.g. "fractions", "geometry") and 1 to 5 specific knowledge \
points (e.g. "adding fractions with unlike denominators").

Problem:
{question}

Reply with JSON only: {{"topics": ["..."], "knowledge_points": ["..."]}}"""

GENERATE_PROMPT = """\
Write a new math word problem that a student can only solve using these concepts.
Topics: {topics}
Knowledge points: {kps}

Use exactly this format:
Question: <the problem, with exactly one numerical answer>
Solution: <step by step, one step per line, each calculation an explicit equation>
The answer is <number>.
```python
def solution():
    # computes the answer of the question from its numbers
    return <number>
```"""

_QUESTION = re.compile(r"^\s*question\s*:\s*(.+?)\n\s*solution\s*:\s*", re.I | re.S | re.M)

LLM_METHOD = "llm_concept_walk"


def extract_concepts(
    client: LLMClient, seeds: Sequence[Seed], graph: ConceptGraph, stage: Stage
) -> list[Rejection]:
    """Ask for each seed's topics and knowledge points and add them to `graph`.

    Seeds already in the graph (e.g. loaded from a previous build) cost no request. Replies
    with more than 2 topics or 5 knowledge points are cut to that; a failed request or a reply
    without both lists becomes a Rejection (the seed stays out of the graph).
    """
    todo = [s for s in seeds if s.id not in graph.members]
    requests = [
        ChatRequest(
            messages=[{"role": "user", "content": CONCEPT_PROMPT.format(question=s.question)}],
            temperature=0.0,
            purpose=f"{GENERATOR}.concepts",
        )
        for s in todo
    ]
    results = complete_counted(client, stage, requests)
    rejected = []
    for seed, result in zip(todo, results, strict=True):
        record = {"seed_id": seed.id, "question": seed.question}
        if isinstance(result, LLMRequestError):
            rejected.append(result.to_rejection(stage.name, record))
            continue
        try:
            data = extract_json_object(result[0].text, ("topics", "knowledge_points"))
            topics = _names(data["topics"], 2)
            kps = _names(data["knowledge_points"], 5)
            if not topics or not kps:
                raise ReplyParseError(
                    "bad_fields", "no topic or no knowledge point", result[0].text
                )
        except ReplyParseError as exc:
            rejected.append(exc.to_rejection(stage.name, record))
            continue
        graph.add(seed.id, topics, kps)
    for r in rejected:
        stage.stat_update(f"rejected:{r.reason}")
    return rejected


def _names(value: Any, limit: int) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(v).strip() for v in value if str(v).strip()][:limit]


class MathScaleLLM(Stage):
    """Source generator: walk-index SeedTasks → LLM-written problems for the sampled concepts.

    The reply must hold a question, a step-by-step solution ending in "The answer is X", and
    a `solution()` program; it is kept only when the program, run in the sandbox, gives an
    answer the AnswerChecker finds equivalent to X. Rejection reasons: llm_*, parse_* (no
    question / answer / program), program_error, program_disagrees.
    """

    name = GENERATOR

    def __init__(
        self,
        client: LLMClient,
        sandbox: Sandbox,
        checker: AnswerChecker,
        graph: ConceptGraph,
        seed: int = 0,
        *,
        config_hash: str = "",
    ) -> None:
        super().__init__()
        self.client = client
        self.sandbox = sandbox
        self.checker = checker
        self.graph = graph
        self.global_seed = seed
        self.config_hash = config_hash

    def run(self, records: Iterable[SeedTask]) -> Iterator[Record]:  # type: ignore[override]
        tasks = list(records)
        walks = [
            self.graph.sample_concepts(
                random.Random(content_id(self.global_seed, GENERATOR, LLM_METHOD, t.index))
            )
            for t in tasks
        ]
        prompts = [
            GENERATE_PROMPT.format(topics="; ".join(w.topics), kps="; ".join(w.kps)) for w in walks
        ]
        # The walk index numbers the sample: a walk drawn again asks for a new problem.
        requests = [
            ChatRequest(
                messages=[{"role": "user", "content": p}],
                first_sample=t.index,
                purpose=f"{GENERATOR}.generate",
            )
            for p, t in zip(prompts, tasks, strict=True)
        ]
        replies = complete_counted(self.client, self, requests)

        outcomes: dict[int, Record] = {}
        drafts: list[tuple[int, str, ReasoningPath, list[Completion]]] = []
        for pos, (task, walk, reply) in enumerate(zip(tasks, walks, replies, strict=True)):
            record = {"index": task.index, "walk": walk.concepts}
            if isinstance(reply, LLMRequestError):
                outcomes[pos] = reply.to_rejection(self.name, record)
                continue
            text = reply[0].text
            match = _QUESTION.search(text)
            try:
                if match is None:
                    raise ReplyParseError("no_question", "no 'Question: ... Solution:' part", text)
                path = ReasoningPath.parse(text[match.end() :])
            except ReplyParseError as exc:
                outcomes[pos] = exc.to_rejection(self.name, record)
                continue
            drafts.append((pos, match.group(1).strip(), path, reply))

        jobs = [SandboxJob(id=str(pos), code=path.program) for pos, _, path, _ in drafts]
        self.stat_update("sandbox_runs", len(jobs))
        results = self.sandbox.run(jobs) if jobs else []
        outputs = [program_answer(r.result) if r.status == "ok" else None for r in results]
        pairs = [(path.answer, out) for (_, _, path, _), out in zip(drafts, outputs, strict=True)]
        verdicts = self.checker.check_many([(g, o) for g, o in pairs if o is not None])
        verdict_iter = iter(verdicts)
        for (pos, question, path, reply), result, out in zip(drafts, results, outputs, strict=True):
            record = {
                "index": tasks[pos].index,
                "walk": walks[pos].concepts,
                "question": question,
                "raw_reply": reply[0].text,  # what the model wrote, to see why it was dropped
            }
            if out is None:
                detail = result.error or f"program returned {result.result!r}, not a number"
                outcomes[pos] = Rejection(self.name, "program_error", detail, record)
                continue
            verdict = next(verdict_iter)
            detail = f"solution says {path.answer}, program returns {out} ({verdict.detail})"
            if not verdict.correct:
                outcomes[pos] = Rejection(self.name, "program_disagrees", detail, record)
                continue
            outcomes[pos] = self._problem(
                tasks[pos], walks[pos], question, path, out, reply, detail
            )

        yield from emit_in_order(self, outcomes, len(tasks))

    def _problem(
        self,
        task: SeedTask,
        walk: ConceptWalk,
        question: str,
        path: ReasoningPath,
        answer: str,
        reply: list[Completion],
        detail: str,
    ) -> Problem:
        usage = usage_provenance(reply)
        return Problem(
            generator=GENERATOR,
            method=LLM_METHOD,
            seed_id=f"walk-{task.index}",
            question=question,
            solution=path.solution,
            answer=answer,
            program=path.program,
            variables={},
            concepts=walk.concepts,
            difficulty=min(5, len(walk.concepts) // 2 + 1),
            verification=Verification("verified", "agreement", detail),
            provenance={
                **usage,
                "index": task.index,
                "walk": walk.concepts,
                "global_seed": self.global_seed,
                "config_hash": self.config_hash,
                "pipeline_version": __version__,
            },
            tokens_in=usage["tokens_in"],
            tokens_out=usage["tokens_out"],
        )
