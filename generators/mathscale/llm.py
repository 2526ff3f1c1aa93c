"""MathScale with an LLM: concepts extracted per seed, new problems written per concept walk.

`extract_concepts` asks each seed's topics and knowledge points once (cached) to build the
concept graph; `MathScaleLLM` prompts for a problem over each sampled concept set and keeps it
only when the program it came with, run in the sandbox, agrees with its stated answer (the
paper did not validate answers; we do).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from mathsynth import __version__
from mathsynth.generators.common.agreement import ReasoningPath, program_answer
from mathsynth.generators.common.rounds import emit_in_order
from mathsynth.generators.llm import (
    Completion,
    LLMClient,
    LLMRequestError,
    ReplyParseError,
    complete_counted,
    usage_provenance,
)
from mathsynth.generators.llm.parsing import extract_json_object
from mathsynth.generators.mathscale.concept_graph import ConceptGraph, ConceptWalk
from mathsynth.generators.mathscale.offline import GENERATOR
from mathsynth.records import Problem, Record, Rejection, Verification, content_id
from mathsynth.seeds import Seed, SeedTask
from mathsynth.stage import SourceStage
from mathsynth.verifiers.answers import AnswerChecker
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob

# The prompt templates (generators/mathscale/prompts/): concept extraction (a JSON reply) and
# problem writing for a sampled concept set.
CONCEPTS_KIND = "mathscale.concepts"
GENERATE_KIND = "mathscale.generate"

_QUESTION = re.compile(r"^\s*question\s*:\s*(.+?)\n\s*solution\s*:\s*", re.I | re.S | re.M)

LLM_METHOD = "llm_concept_walk"


def extract_concepts(llm: LLMClient, seeds: Sequence[Seed], graph: ConceptGraph) -> list[Rejection]:
    """Ask for each seed's topics and knowledge points and add them to `graph`.

    Runs while the build is planned, not in a stage: its requests and tokens are counted in
    the client's build-wide stats. Seeds already in the graph (e.g. loaded from a previous
    build) cost no request. Replies with more than 2 topics or 5 knowledge points are cut to
    that; a failed request or a reply without both lists becomes a Rejection (stage
    `mathscale`; the seed stays out of the graph).
    """
    todo = [s for s in seeds if s.id not in graph.members]
    prompt = llm.prompts.get(CONCEPTS_KIND)
    requests = [prompt.request({"question": s.question}, temperature=0.0) for s in todo]
    results = llm.complete_many(requests) if requests else []
    rejected: list[Rejection] = []
    for seed, result in zip(todo, results, strict=True):
        record = {"seed_id": seed.id, "question": seed.question}
        if isinstance(result, LLMRequestError):
            rejected.append(_rejection(result, record))
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
            rejected.append(_rejection(exc, record))
            continue
        graph.add(seed.id, topics, kps)
    return rejected


def _rejection(error: LLMRequestError | ReplyParseError, record: dict[str, Any]) -> Rejection:
    return Rejection(GENERATOR, error.code, error.detail, error.rejected_input(record))


def _names(value: Any, limit: int) -> list[str]:
    if not isinstance(value, list):
        return []
    return [str(v).strip() for v in value if str(v).strip()][:limit]


class MathScaleLLM(SourceStage):
    """Source generator: walk-index SeedTasks → LLM-written problems for the sampled concepts.

    The reply must hold a question, a step-by-step solution ending in "The answer is X", and
    a `solution()` program; it is kept only when the program, run in the sandbox, gives an
    answer the AnswerChecker finds equivalent to X. Rejection reasons: llm_*, parse_* (no
    question / answer / program), program_error, program_disagrees.
    """

    name = GENERATOR
    requires = (("openai", "openai[aiohttp]"), ("math_verify", "math-verify"))

    def __init__(
        self,
        *,
        llm: LLMClient,
        sandbox: Sandbox,
        checker: AnswerChecker,
        graph: ConceptGraph,
        seed: int = 0,
        config_hash: str = "",
    ) -> None:
        super().__init__()
        self.llm = llm
        self.sandbox = sandbox
        self.checker = checker
        self.graph = graph
        self.global_seed = seed
        self.config_hash = config_hash

    def run(self, tasks: Iterable[SeedTask]) -> Iterator[Record]:
        tasks = list(tasks)
        walks = [
            self.graph.sample_concepts(
                random.Random(content_id(self.global_seed, GENERATOR, LLM_METHOD, t.index))
            )
            for t in tasks
        ]
        prompt = self.llm.prompts.get(GENERATE_KIND)
        # The walk index numbers the sample: a walk drawn again asks for a new problem.
        requests = [
            prompt.request(
                {"topics": list(w.topics), "knowledge_points": list(w.kps)},
                first_sample=t.index,
            )
            for w, t in zip(walks, tasks, strict=True)
        ]
        replies = complete_counted(self.llm, self, requests)

        outcomes: dict[int, Record] = {}
        drafts: list[tuple[int, str, ReasoningPath, list[Completion]]] = []
        for pos, (task, walk, reply) in enumerate(zip(tasks, walks, replies, strict=True)):
            record = {"index": task.index, "walk": walk.concepts}
            if isinstance(reply, LLMRequestError):
                outcomes[pos] = reply.to_rejection(self, record)
                continue
            text = reply[0].text
            match = _QUESTION.search(text)
            try:
                if match is None:
                    raise ReplyParseError("no_question", "no 'Question: ... Solution:' part", text)
                path = ReasoningPath.parse(text[match.end() :])
            except ReplyParseError as exc:
                outcomes[pos] = exc.to_rejection(self, record)
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
                outcomes[pos] = self.reject(record, "program_error", detail)
                continue
            verdict = next(verdict_iter)
            detail = f"solution says {path.answer}, program returns {out} ({verdict.detail})"
            if not verdict.correct:
                outcomes[pos] = self.reject(record, "program_disagrees", detail)
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
