"""Self-agreement among sampled LLM solutions, for generators that have no gold answer.

A sampled reasoning path is prose with a stated final answer plus a program; a vote clusters
the stated answers by equivalence (the answer checker), takes the largest cluster and keeps
its paths whose program, run in the sandbox, gives the same answer. MuggleMath and MathScale
both judge LLM output this way.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mathsynth.generators.llm.parsing import extract_code, extract_final_answer
from mathsynth.numbers import format_answer
from mathsynth.verifiers.answers import AnswerChecker
from mathsynth.verifiers.sandbox import SandboxResult


def program_answer(result: Any) -> str | None:
    """Canonical answer text for a program's return value (int, 2-place decimal, fraction)."""
    if isinstance(result, str):
        return None
    for kind in ("int", "decimal", "fraction"):
        text = format_answer(result, kind)  # type: ignore[arg-type]
        if text is not None:
            return text
    return None


@dataclass(frozen=True, slots=True)
class ReasoningPath:
    """One sampled solution: its text without code, stated answer, and program."""

    solution: str
    answer: str
    program: str

    @classmethod
    def parse(cls, text: str) -> ReasoningPath:
        """Failure modes: ReplyParseError "no_code" / "no_answer" / "empty" / "refusal"."""
        program = extract_code(text)
        prose = _FENCED.sub("", text).strip()
        answer = extract_final_answer(prose)
        return cls(prose, answer, program)


_FENCED = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Vote:
    """The agreement among k sampled paths: the winning answer and the paths behind it."""

    answer: str | None
    votes: int
    k: int
    kept: list[int]  # paths in the majority whose program gives the same answer
    executed: dict[int, str | None]

    def detail(self, threshold: float) -> str:
        return (
            f"votes {self.votes}/{self.k} for {self.answer} (threshold {threshold:g}); "
            f"{len(self.kept)} of them match their program's output"
        )


def vote(
    paths: Sequence[ReasoningPath | None],
    results: Sequence[SandboxResult | None],
    checker: AnswerChecker,
    k: int,
) -> Vote:
    """Cluster stated answers by equivalence (first path of a cluster is its gold), pick the
    largest cluster (earliest on ties), and keep its paths whose program output agrees."""
    clusters: list[list[int]] = []
    for i, path in enumerate(paths):
        if path is None:
            continue
        golds = [(paths[c[0]].answer, path.answer) for c in clusters]  # type: ignore[union-attr]
        verdicts = checker.check_many(golds) if golds else []
        home = next((c for c, v in zip(clusters, verdicts, strict=True) if v.correct), None)
        if home is None:
            clusters.append([i])
        else:
            home.append(i)
    executed = {
        i: program_answer(r.result) if r is not None and r.status == "ok" else None
        for i, r in enumerate(results)
    }
    if not clusters:
        return Vote(None, 0, k, [], executed)
    best = max(clusters, key=len)  # max keeps the first of equal-sized clusters
    winner = paths[best[0]].answer  # type: ignore[union-attr]
    runs = [(i, executed[i]) for i in best if executed.get(i) is not None]
    verdicts = checker.check_many([(winner, out) for _, out in runs]) if runs else []
    kept = [i for (i, _), v in zip(runs, verdicts, strict=True) if v.correct]
    return Vote(winner, len(best), k, kept, executed)
