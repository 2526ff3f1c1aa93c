"""The records that flow between stages: one dataclass per output table.

Every stage consumes and yields these. `to_row()` gives the dict that matches the pyarrow
schema of the record's table in `storage.schemas`; nested JSON-ish fields (variables,
provenance, rejected input) are serialised there, once, so stages work with Python objects.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

VerificationStatus = Literal["verified", "failed", "unchecked", "error"]
LeanStatus = Literal["compiled", "proved", "failed", "unchecked"]


def content_id(*parts: object) -> str:
    """Stable 16-hex-digit id from the given parts (order matters).

    Ids must be identical across runs and machines so a resumed build produces the same rows;
    that is why this hashes a canonical JSON rendering rather than using Python's `hash`.
    """
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def dumps(value: Any) -> str:
    """Canonical JSON used for every JSON-string column (sorted keys, UTF-8 kept)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


@dataclass(frozen=True, slots=True)
class Verification:
    """What checked a record and what it found.

    `status` is "verified" only when `checker` really ran and passed; a record whose checker
    could not run is "unchecked", never "verified".
    """

    status: VerificationStatus
    checker: str
    detail: str = ""

    def to_row(self) -> dict[str, str]:
        return {"status": self.status, "checker": self.checker, "detail": self.detail}


UNCHECKED = Verification("unchecked", "none", "no checker ran")


@dataclass(slots=True)
class Problem:
    """One SFT row: a problem with its solution text, answer and executable program."""

    table: ClassVar[str] = "sft"

    generator: str
    method: str
    seed_id: str
    question: str
    solution: str
    answer: str
    program: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    concepts: list[str] = field(default_factory=list)
    difficulty: int = 1
    parent_id: str | None = None
    verification: Verification = UNCHECKED
    provenance: dict[str, Any] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = content_id(
                "sft", self.generator, self.method, self.seed_id, self.question, self.answer
            )

    def messages(self) -> list[dict[str, str]]:
        """Conversation in the shape TRL's SFTTrainer reads (`messages` column)."""
        return [
            {"role": "user", "content": self.question},
            {"role": "assistant", "content": self.solution},
        ]

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "generator": self.generator,
            "method": self.method,
            "seed_id": self.seed_id,
            "parent_id": self.parent_id,
            "question": self.question,
            "solution": self.solution,
            "answer": self.answer,
            "program": self.program,
            "variables": dumps(self.variables),
            "concepts": list(self.concepts),
            "difficulty": int(self.difficulty),
            "messages": self.messages(),
            "verification": self.verification.to_row(),
            "provenance": dumps(self.provenance),
            "tokens_in": int(self.tokens_in),
            "tokens_out": int(self.tokens_out),
        }


@dataclass(slots=True)
class PreferencePair:
    """One DPO row: a correct and a subtly wrong solution to the same prompt."""

    table: ClassVar[str] = "dpo"

    source_id: str
    prompt: str
    chosen: str
    rejected: str
    error_type: str
    edit_start: int
    edit_end: int
    step_index: int
    verification: Verification = UNCHECKED
    provenance: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = content_id("dpo", self.source_id, self.chosen, self.rejected)

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source_id": self.source_id,
            "prompt": self.prompt,
            "chosen": self.chosen,
            "rejected": self.rejected,
            "error_type": self.error_type,
            "edit_start": int(self.edit_start),
            "edit_end": int(self.edit_end),
            "step_index": int(self.step_index),
            "verification": self.verification.to_row(),
            "provenance": dumps(self.provenance),
        }


@dataclass(slots=True)
class FormalStatement:
    """One Lean 4 statement row."""

    table: ClassVar[str] = "formal"

    source_id: str
    informal: str
    header: str
    formal_statement: str
    proof: str | None = None
    lean_status: LeanStatus = "unchecked"
    lean_messages: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = content_id("formal", self.source_id, self.formal_statement)

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "source_id": self.source_id,
            "informal": self.informal,
            "header": self.header,
            "formal_statement": self.formal_statement,
            "proof": self.proof,
            "lean_status": self.lean_status,
            "lean_messages": list(self.lean_messages),
            "provenance": dumps(self.provenance),
        }


@dataclass(slots=True)
class Rejection:
    """Something a stage filtered out, kept with the reason so nothing is silently lost.

    `reason` is a short machine-groupable code (e.g. "constraint_unsatisfied"); `detail` is
    the human explanation; `record` is the rejected input as a JSON-able dict.
    """

    table: ClassVar[str] = "rejected"

    stage: str
    reason: str
    detail: str
    record: dict[str, Any]
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = content_id("rejected", self.stage, self.reason, self.record)

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stage": self.stage,
            "reason": self.reason,
            "detail": self.detail,
            "record": dumps(self.record),
        }


Record = Problem | PreferencePair | FormalStatement | Rejection


def as_dict(record: Record) -> dict[str, Any]:
    """Plain dict of a record (for embedding a rejected input in a Rejection)."""
    return asdict(record)
