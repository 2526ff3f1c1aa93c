"""The records that flow between stages: one dataclass per output table, with its schema.

Every stage consumes and yields these. Each record class holds the pyarrow schema of its
table (`schema`, the one definition of its columns: DESIGN.md's data model) and `to_row()`
builds the row from it: a column is the attribute of the same name, with Verification as its
struct and dict / list values of string columns (variables, provenance, the rejected input)
as canonical JSON. So stages work with Python objects and a column is declared once.

JSON-object columns are strings because their keys vary per generator: a string keeps Parquet,
DuckDB (`json_extract`) and `datasets` happy without a schema per generator. `messages` is a
list of {role, content} structs, the shape TRL's SFTTrainer reads directly.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import pyarrow as pa

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


VERIFICATION = pa.struct(
    [("status", pa.string()), ("checker", pa.string()), ("detail", pa.string())]
)
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])


def to_row(record: Any) -> dict[str, Any]:
    """The row of `record` for its table: one value per column of `record.schema`."""
    row: dict[str, Any] = {}
    for column in record.schema:
        value = getattr(record, column.name)
        if isinstance(value, Verification):
            value = value.to_row()
        elif pa.types.is_string(column.type) and isinstance(value, dict | list):
            value = dumps(value)
        row[column.name] = value
    return row


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
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("id", pa.string()),
            ("generator", pa.string()),
            ("method", pa.string()),
            ("seed_id", pa.string()),
            ("parent_id", pa.string()),
            ("question", pa.string()),
            ("solution", pa.string()),
            ("answer", pa.string()),
            ("program", pa.string()),
            ("variables", pa.string()),
            ("concepts", pa.list_(pa.string())),
            ("difficulty", pa.int32()),
            ("messages", pa.list_(MESSAGE)),
            ("verification", VERIFICATION),
            ("provenance", pa.string()),
            ("tokens_in", pa.int64()),
            ("tokens_out", pa.int64()),
        ]
    )

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

    @property
    def messages(self) -> list[dict[str, str]]:
        """Conversation in the shape TRL's SFTTrainer reads (`messages` column)."""
        return [
            {"role": "user", "content": self.question},
            {"role": "assistant", "content": self.solution},
        ]

    def to_row(self) -> dict[str, Any]:
        return to_row(self)


SPAN = pa.struct([("start", pa.int32()), ("end", pa.int32())])


@dataclass(slots=True)
class PreferencePair:
    """One DPO row: a correct and a subtly wrong solution to the same prompt.

    Stages work with the texts; the row holds them in TRL's conversational preference format
    (`prompt` a list of messages, `chosen` / `rejected` one assistant message each, the same
    chat shape as the sft `messages`) and as plain strings (`*_text`). `edit_start` /
    `edit_end` are the injected edit and `spans` every changed region, as character offsets
    into `rejected_text`: together the spans cover every character in which the rejected
    text differs from the chosen one (see `generators.rise.spans`).
    """

    table: ClassVar[str] = "dpo"
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("id", pa.string()),
            ("source_id", pa.string()),
            ("prompt", pa.list_(MESSAGE)),
            ("chosen", pa.list_(MESSAGE)),
            ("rejected", pa.list_(MESSAGE)),
            ("prompt_text", pa.string()),
            ("chosen_text", pa.string()),
            ("rejected_text", pa.string()),
            ("error_type", pa.string()),
            ("edit_start", pa.int32()),
            ("edit_end", pa.int32()),
            ("spans", pa.list_(SPAN)),
            ("step_index", pa.int32()),
            ("verification", VERIFICATION),
            ("provenance", pa.string()),
        ]
    )

    source_id: str
    prompt_text: str
    chosen_text: str
    rejected_text: str
    error_type: str
    edit_start: int
    edit_end: int
    step_index: int
    spans: list[dict[str, int]] = field(default_factory=list)
    verification: Verification = UNCHECKED
    provenance: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = content_id("dpo", self.source_id, self.chosen_text, self.rejected_text)

    @property
    def prompt(self) -> list[dict[str, str]]:
        return [{"role": "user", "content": self.prompt_text}]

    @property
    def chosen(self) -> list[dict[str, str]]:
        return [{"role": "assistant", "content": self.chosen_text}]

    @property
    def rejected(self) -> list[dict[str, str]]:
        return [{"role": "assistant", "content": self.rejected_text}]

    def to_row(self) -> dict[str, Any]:
        return to_row(self)


@dataclass(slots=True)
class FormalStatement:
    """One Lean 4 statement row."""

    table: ClassVar[str] = "formal"
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("id", pa.string()),
            ("source_id", pa.string()),
            ("informal", pa.string()),
            ("header", pa.string()),
            ("formal_statement", pa.string()),
            ("proof", pa.string()),
            ("lean_status", pa.string()),
            ("lean_messages", pa.list_(pa.string())),
            ("provenance", pa.string()),
        ]
    )

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
        return to_row(self)


@dataclass(slots=True)
class Rejection:
    """Something a stage filtered out, kept with the reason so nothing is silently lost.

    `reason` is a short machine-groupable code (e.g. "constraint_unsatisfied"); `detail` is
    the human explanation; `record` is the rejected input as a JSON-able dict.
    """

    table: ClassVar[str] = "rejected"
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("id", pa.string()),
            ("stage", pa.string()),
            ("reason", pa.string()),
            ("detail", pa.string()),
            ("record", pa.string()),
        ]
    )

    stage: str
    reason: str
    detail: str
    record: dict[str, Any]
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            self.id = content_id("rejected", self.stage, self.reason, self.record)

    def to_row(self) -> dict[str, Any]:
        return to_row(self)


Record = Problem | PreferencePair | FormalStatement | Rejection

# The output tables, in the order they are written and reported.
RECORD_TYPES: tuple[type[Problem | PreferencePair | FormalStatement | Rejection], ...] = (
    Problem,
    PreferencePair,
    FormalStatement,
    Rejection,
)


def as_dict(record: Record) -> dict[str, Any]:
    """Plain dict of a record (for embedding a rejected input in a Rejection)."""
    return asdict(record)
