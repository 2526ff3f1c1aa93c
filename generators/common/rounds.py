"""Batch helpers shared by the source generator stages (MuggleMath, MathScale).

Candidate draws are executed in sandbox rounds so that most tasks cost a few runs, and each
stage's outcomes are yielded in task order with their accept/reject counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

from mathsynth.records import Problem, Record
from mathsynth.stage import Stage
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob, SandboxResult

R = TypeVar("R")

# Candidates run in two rounds: most tasks are decided by one of their first few draws, so
# the rest are executed only for tasks still undecided. Draws are made up front and judged in
# order, so the outcome is the same as running all of them.
FIRST_ROUND = 3

Decide = Callable[[int, list[SandboxResult], bool], R | None]


def run_in_rounds(
    sandbox: Sandbox,
    candidates: Sequence[Sequence[SandboxJob]],
    decide: Decide[R],
    stage: Stage[Any],
) -> list[R]:
    """Execute each task's candidate jobs until `decide(task, results, final)` returns a
    result; with `final` True (all candidates ran) it must return one."""
    out: dict[int, R] = {}
    seen: dict[int, list[SandboxResult]] = {k: [] for k in range(len(candidates))}
    for lo, hi in ((0, FIRST_ROUND), (FIRST_ROUND, None)):
        todo = [k for k in range(len(candidates)) if k not in out]
        jobs = [job for k in todo for job in candidates[k][lo:hi]]
        stage.stat_update("sandbox_runs", len(jobs))
        results = iter(sandbox.run(jobs) if jobs else [])
        for k in todo:
            seen[k].extend(next(results) for _ in candidates[k][lo:hi])
            final = len(seen[k]) == len(candidates[k])
            decided = decide(k, seen[k], final)
            if decided is not None:
                out[k] = decided
    return [out[k] for k in range(len(candidates))]


def emit_in_order(
    stage: Stage[Any], outcomes: Mapping[int, Record], count: int
) -> Iterator[Record]:
    """Yield tasks 0..count-1's outcomes in task order, counting each Problem as `accepted`
    in `stage`'s stats (its Rejections were counted by `Stage.reject` when made)."""
    for pos in range(count):
        record = outcomes[pos]
        if isinstance(record, Problem):
            stage.stat_update("accepted")
        yield record
