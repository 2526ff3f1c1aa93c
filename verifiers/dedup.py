"""Exact deduplication of Problems inside a batch: the same normalised question is one row.

Two tasks can land on the same problem (a small value range drawn twice, two concept walks
choosing the same seed and numbers, two generators reaching the same variant). The first one
in the batch is kept; later ones become Rejections naming their kept twin, before any pair or
statement is derived from them. Duplicates across batches are removed when the build finishes
(`storage.dedup`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from mathsynth.records import Problem, Record
from mathsynth.stage import RecordStage
from mathsynth.text import question_key


class ExactDedup(RecordStage):
    name = "dedup"

    def __init__(self) -> None:
        super().__init__()
        self._seen: dict[str, str] = {}

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            if isinstance(record, Problem):
                key = question_key(record.question)
                twin = self._seen.get(key)
                if twin is not None:
                    yield self.reject(
                        record.to_row(),
                        "duplicate",
                        f"same question as row {twin} earlier in the batch, which is kept",
                    )
                    continue
                self._seen[key] = record.id
            yield record
