"""MuggleMath with an LLM: all five rewrite strategies, kept by self-agreement.

The offline stage covers the strategies a seed's program can do by rule; the LLM stage asks a
model to rewrite the question, samples k reasoning paths (each with a program), and keeps the
question only when enough paths agree and a program in the majority reproduces the answer.
Parsing sampled paths and voting on them live in `generators.common.agreement`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from mathsynth import __version__
from mathsynth.config import LLMSettings
from mathsynth.generators.common.agreement import ReasoningPath, vote
from mathsynth.generators.common.rounds import emit_in_order
from mathsynth.generators.llm import (
    ChatRequest,
    Completion,
    LLMClient,
    LLMRequestError,
    ReplyParseError,
    complete_counted,
    usage_provenance,
)
from mathsynth.generators.llm.parsing import extract_json_object
from mathsynth.generators.mugglemath.offline import GENERATOR
from mathsynth.records import Problem, Record, Verification
from mathsynth.seeds import SeedTask
from mathsynth.stage import SourceStage
from mathsynth.verifiers.answers import AnswerChecker
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob, SandboxResult

LLM_STRATEGIES = (
    "change_numbers",
    "fractions_percentages",
    "combine_concepts",
    "add_conditional",
    "increase_complexity",
)

# The prompt templates (generators/mugglemath/prompts/): the rewrite (strategy + question,
# a JSON reply) and the reasoning path sampled k times.
AUGMENT_KIND = "mugglemath.augment"
SOLVE_KIND = "mugglemath.solve"

# Reasoning paths are sampled hotter than the rewrite so that they can disagree.
PATH_TEMPERATURE = 0.9


class MuggleMathLLM(SourceStage):
    """Source generator: SeedTasks → LLM-rewritten questions kept by self-agreement.

    Task `index` picks the strategy (round robin over the five). For each new question,
    `settings.samples` reasoning paths are sampled, each with a program; the question is kept
    when the largest group of equivalent answers holds at least `agreement_threshold` of
    the k paths and a path of that group has a program (run in the sandbox) giving the same
    answer. There is no gold answer, so this agreement is the check that is recorded.

    Rejection reasons: llm_* (request failed), parse_* (unusable rewrite), no_paths (no
    path parsed), no_majority, program_disagrees.
    """

    name = GENERATOR
    requires = (("openai", "openai[aiohttp]"), ("math_verify", "math-verify"))

    def __init__(
        self,
        *,
        llm: LLMClient,
        sandbox: Sandbox,
        checker: AnswerChecker,
        settings: LLMSettings,
        seed: int = 0,
        config_hash: str = "",
    ) -> None:
        super().__init__()
        self.llm = llm
        self.sandbox = sandbox
        self.checker = checker
        self.settings = settings
        self.global_seed = seed
        self.config_hash = config_hash

    def run(self, tasks: Iterable[SeedTask]) -> Iterator[Record]:
        tasks = [t for t in tasks if t.seed is not None]
        augment = self.llm.prompts.get(AUGMENT_KIND)
        rewrites = self._complete(
            [
                augment.request({"strategy": self._strategy(t), "question": t.seed.question})
                for t in tasks
                if t.seed is not None
            ]
        )
        outcomes: dict[int, Record] = {}
        asked: list[tuple[int, str, list[Completion]]] = []
        for pos, (task, reply) in enumerate(zip(tasks, rewrites, strict=True)):
            if isinstance(reply, LLMRequestError):
                outcomes[pos] = reply.to_rejection(self, self._record(task))
                continue
            try:
                data = extract_json_object(reply[0].text, ("question",))
                question = str(data["question"]).strip()
                if not question:
                    raise ReplyParseError("bad_fields", "empty question", reply[0].text)
            except ReplyParseError as exc:
                outcomes[pos] = exc.to_rejection(self, self._record(task))
                continue
            asked.append((pos, question, reply))

        k = self.settings.samples
        solve = self.llm.prompts.get(SOLVE_KIND)
        solved = self._complete(
            [
                solve.request(
                    {"question": q},
                    n=k,
                    temperature=max(self.settings.temperature, PATH_TEMPERATURE),
                )
                for _, q, _ in asked
            ]
        )
        parsed: list[list[ReasoningPath | None]] = []
        jobs: list[SandboxJob] = []
        for (pos, _, _), reply in zip(asked, solved, strict=True):
            paths: list[ReasoningPath | None] = []
            if not isinstance(reply, LLMRequestError):
                for c in reply:
                    try:
                        paths.append(ReasoningPath.parse(c.text))
                    except ReplyParseError:
                        self.stat_update("paths_unparsed")
                        paths.append(None)
            parsed.append(paths)
            jobs.extend(
                SandboxJob(id=f"{pos}:{i}", code=p.program) for i, p in enumerate(paths) if p
            )
        self.stat_update("sandbox_runs", len(jobs))
        results = iter(self.sandbox.run(jobs) if jobs else [])
        for (pos, question, rewrite), reply, paths in zip(asked, solved, parsed, strict=True):
            runs = [next(results) if p is not None else None for p in paths]
            outcomes[pos] = self._judge(tasks[pos], question, rewrite, reply, paths, runs)

        yield from emit_in_order(self, outcomes, len(tasks))

    def _judge(
        self,
        task: SeedTask,
        question: str,
        rewrite: list[Completion],
        reply: list[Completion] | LLMRequestError,
        paths: list[ReasoningPath | None],
        runs: list[SandboxResult | None],
    ) -> Record:
        record = {**self._record(task), "question": question}
        if isinstance(reply, LLMRequestError):
            return reply.to_rejection(self, record)
        # The sampled paths themselves, so a dropped question shows what the model wrote.
        record["raw_replies"] = [c.text for c in reply]
        if not any(paths):
            return self.reject(record, "no_paths", "no reasoning path could be parsed")
        result = vote(paths, runs, self.checker, self.settings.samples)
        threshold = self.settings.agreement_threshold
        record["votes"] = {"answers": [p.answer if p else None for p in paths]}
        if result.votes / result.k < threshold:
            return self.reject(record, "no_majority", result.detail(threshold))
        if not result.kept:
            return self.reject(record, "program_disagrees", result.detail(threshold))
        chosen = paths[result.kept[0]]
        assert chosen is not None and task.seed is not None
        used = [*rewrite, *reply]
        usage = usage_provenance(used)
        return Problem(
            generator=GENERATOR,
            method=STRATEGY_METHODS[self._strategy(task)],
            seed_id=task.seed.id,
            parent_id=task.seed.id,
            question=question,
            solution=chosen.solution,
            answer=result.executed[result.kept[0]] or chosen.answer,
            program=chosen.program,
            variables={},
            concepts=task.seed.spec.concepts if task.seed.spec else [],
            difficulty=task.seed.spec.difficulty if task.seed.spec else 1,
            verification=Verification("verified", "agreement", result.detail(threshold)),
            provenance={
                **usage,
                "strategy": self._strategy(task),
                "index": task.index,
                "samples": self.settings.samples,
                "path_temperature": max(self.settings.temperature, PATH_TEMPERATURE),
                "global_seed": self.global_seed,
                "config_hash": self.config_hash,
                "pipeline_version": __version__,
            },
            tokens_in=usage["tokens_in"],
            tokens_out=usage["tokens_out"],
        )

    def _strategy(self, task: SeedTask) -> str:
        return LLM_STRATEGIES[task.index % len(LLM_STRATEGIES)]

    def _complete(self, requests: list[ChatRequest]) -> list[list[Completion] | LLMRequestError]:
        return complete_counted(self.llm, self, requests)

    def _record(self, task: SeedTask) -> dict[str, Any]:
        assert task.seed is not None
        return {"seed_id": task.seed.id, "index": task.index, "strategy": self._strategy(task)}


STRATEGY_METHODS = {s: f"llm_{s}" for s in LLM_STRATEGIES}
