"""The Stage contract: a small class whose `run(records)` consumes and yields records.

Modelled on datatrove's PipelineStep. A stage owns no I/O and no orchestration: the flow
decides batching, the storage layer writes. Stages pass through records they do not handle,
so they compose by simple chaining: `for stage in stages: records = stage.run(records)`.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterable, Iterator

from mathsynth.errors import MissingDependencyError
from mathsynth.records import Record

# Stages that derive extra rows (pairs, statements) from problems that were already accepted:
# their rejections say nothing about a source generator's acceptance rate.
DERIVED_STAGES = ("rise", "rise_self_edit", "formalize", "formalize_llm")


class Stage:
    """Base class for generators and verifiers.

    Subclasses set `name`, optionally `requires` as (import name, pip name) pairs for optional
    packages, and implement `run`. Counters go through `stat_update` so every stage reports
    what it did (accepted, rejected by reason, requests, tokens) the same way.
    """

    name: str = "stage"
    requires: tuple[tuple[str, str], ...] = ()

    def __init__(self) -> None:
        self.stats: Counter[str] = Counter()

    def check_requirements(self) -> None:
        """Raise MissingDependencyError with a pip hint if an optional package is missing."""
        for module, pip_name in self.requires:
            if importlib.util.find_spec(module) is None:
                raise MissingDependencyError(self.name, module, pip_name)

    def stat_update(self, key: str, value: int = 1) -> None:
        self.stats[key] += value

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


def run_pipeline(stages: Iterable[Stage], records: Iterable[Record]) -> Iterator[Record]:
    """Chain stages lazily; nothing is materialised between them."""
    stream: Iterable[Record] = records
    for stage in stages:
        stream = stage.run(stream)
    yield from stream
