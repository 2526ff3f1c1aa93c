"""The Stage contract: a small class whose `run(data)` consumes its input and yields records.

Modelled on datatrove's PipelineStep. A stage owns no I/O and no orchestration: the executor
decides batching, the storage layer writes. Two kinds share one base:

- a `SourceStage` (a generator that makes problems) takes `SeedTask`s;
- a `RecordStage` (a verifier, or a generator that derives pairs / statements) takes records
  and passes through the ones it does not handle, so record stages compose by chaining:
  `for stage in stages: records = stage.run(records)`.

The base owns what every stage does the same way: the counters (`stat_update`), the one way to
drop something (`reject`, counted as `rejected:<reason>`), and the check that the optional
packages a stage declares in `requires` are installed, made when the stage is built.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, Generic, TypeVar

from mathsynth.errors import MissingDependencyError
from mathsynth.records import Record, Rejection, as_dict
from mathsynth.seeds import SeedTask

In = TypeVar("In")


def check_requires(who: str, requires: Iterable[tuple[str, str]]) -> None:
    """Raise MissingDependencyError naming `who` and the pip command for the first of the
    (import name, pip name) pairs that is not installed. Shared by stages and by commands
    that need an optional extra (`mathsynth train`)."""
    for module, pip_name in requires:
        if importlib.util.find_spec(module) is None:
            raise MissingDependencyError(who, module, pip_name)


class Stage(Generic[In]):
    """Base class of every generator and verifier stage.

    Subclasses set `name` (the `stage` of their rejections and the prefix of their counters),
    optionally `requires` as (import name, pip name) pairs, and implement `run`.

    Failure modes: constructing a stage whose `requires` are not importable raises
    MissingDependencyError with the pip command that installs them.
    """

    name: ClassVar[str] = "stage"
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self) -> None:
        self.check_requirements()
        self.stats: Counter[str] = Counter()

    @classmethod
    def check_requirements(cls) -> None:
        """Raise MissingDependencyError with a pip hint if an optional package is missing."""
        check_requires(cls.name, cls.requires)

    def stat_update(self, key: str, value: int = 1) -> None:
        self.stats[key] += value

    def reject(self, record: Record | dict[str, Any], reason: str, detail: str) -> Rejection:
        """The `rejected` row for `record` (a record, or the JSON-able input it came from),
        counted as `rejected:<reason>`."""
        self.stat_update(f"rejected:{reason}")
        row = record if isinstance(record, dict) else as_dict(record)
        return Rejection(self.name, reason, detail, row)

    def run(self, data: Iterable[In]) -> Iterator[Record]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class SourceStage(Stage[SeedTask]):
    """A generator that makes problems: `run(tasks)` yields one record per task it was given
    (a Problem, or the Rejection that says why there is none)."""


class RecordStage(Stage[Record]):
    """A stage over records: verifiers, and generators that derive rows (pairs, statements)
    from the problems they see. It yields every record it is given, plus what it adds."""


def run_pipeline(
    source: SourceStage | None, stages: Iterable[RecordStage], data: Iterable[Any]
) -> Iterator[Record]:
    """Chain lazily: `source` over tasks (or `data` as records when there is none), then every
    record stage in order; nothing is materialised between them."""
    stream: Iterable[Record] = source.run(data) if source is not None else data
    for stage in stages:
        stream = stage.run(stream)
    yield from stream
