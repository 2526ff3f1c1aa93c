"""Exact deduplication of Problems inside a batch (same content id = same row).

Two tasks can land on the same problem (a small value range drawn twice, two concept walks
choosing the same seed and numbers). The first one in the batch is kept; later ones become
Rejections, before any pair or statement is derived from them. Duplicates across batches
are removed when the build finishes (`storage.dedup`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mathsynth.records import Problem, Record, Rejection
from mathsynth.stage import Stage


class ExactDedup(Stage):
    name = "dedup"

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            if isinstance(record, Problem):
                if record.id in self._seen:
                    self.stat_update("rejected:duplicate")
                    yield Rejection(
                        self.name,
                        "duplicate",
                        f"same question and answer as row {record.id} earlier in the batch",
                        record.to_row(),
                    )
                    continue
                self._seen.add(record.id)
            yield record
