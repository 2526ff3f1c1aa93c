"""Tolerant extraction of structured content from model replies.

Models wrap JSON in prose or code fences, add trailing commas, stop mid-object, or refuse.
Each extractor returns what it found or raises ReplyParseError with a groupable reason and
the raw reply, which the generator records as a `rejected` row (`error.to_rejection(...)`).
Nothing here guesses a value that is not in the reply.
"""

from __future__ import annotations

import json
import re
from typing import Any

from mathsynth.generators.llm.errors import ReplyParseError

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_TRAILING_COMMA = re.compile(r",\s*([}\]])")
# Openings that mean the model declined; checked on the reply's first sentence only, so a
# solution that says "I cannot see why..." halfway through is not a refusal.
_REFUSAL = re.compile(
    r"^\W*(i'?m sorry|i am sorry|sorry, (but )?i|i can(no|')t (help|assist|do|provide|comply)"
    r"|i cannot (help|assist|do|provide|comply)|i'?m (not able|unable) to|i am (not able|unable)"
    r" to|as an ai\b|i won'?t be able to)",
    re.IGNORECASE,
)
_BOXED = "\\boxed{"
_ANSWER_LINE = re.compile(
    r"(?:^####\s*(?P<hash>.+?)\s*$)"
    r"|(?:(?:final answer|the answer is|answer\s*:)\s*[:=]?\s*(?P<said>[^\n]+?)\s*\.?\s*$)",
    re.IGNORECASE | re.MULTILINE,
)


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.match(text.strip()[:200]))


def check_reply(text: str) -> str:
    """The reply stripped, or ReplyParseError("empty" | "refusal")."""
    stripped = text.strip()
    if not stripped:
        raise ReplyParseError("empty", "the reply is empty", text)
    if is_refusal(stripped):
        raise ReplyParseError("refusal", "the model declined the task", text)
    return stripped


def code_blocks(text: str) -> list[tuple[str, str]]:
    """(language, body) for each fenced block; an unclosed final fence runs to the end."""
    return [(m.group(1).lower(), m.group(2).strip("\n")) for m in _FENCE.finditer(text)]


def extract_json(text: str) -> Any:
    """The JSON value a reply carries: a ```json block, else the first balanced {...}/[...].

    Tolerates prose around it and trailing commas. Raises ReplyParseError: "empty",
    "refusal", "no_json" (nothing JSON-like), "malformed_json" (found but not parseable,
    e.g. cut off by max_tokens).
    """
    stripped = check_reply(text)
    candidates = [body for lang, body in code_blocks(stripped) if lang in ("json", "")]
    span = _balanced_span(stripped)
    if span is not None:
        candidates.append(span)
    if not candidates:
        if "{" in stripped or "[" in stripped:
            raise ReplyParseError("malformed_json", "a JSON value starts but never ends", text)
        raise ReplyParseError("no_json", "the reply contains no JSON", text)
    last_error = ""
    for candidate in candidates:
        for attempt in (candidate, _TRAILING_COMMA.sub(r"\1", candidate)):
            try:
                return json.loads(attempt)
            except ValueError as exc:
                last_error = str(exc)
    raise ReplyParseError("malformed_json", f"invalid JSON ({last_error})", text)


def extract_json_object(text: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """`extract_json` that must give an object holding every key in `required` ("bad_fields")."""
    value = extract_json(text)
    if not isinstance(value, dict):
        raise ReplyParseError(
            "bad_fields", f"expected a JSON object, got {type(value).__name__}", text
        )
    absent = [k for k in required if k not in value]
    if absent:
        raise ReplyParseError("bad_fields", f"missing field(s): {', '.join(absent)}", text)
    return value


def extract_code(text: str, language: str = "python") -> str:
    """The last fenced block in `language` (or unlabelled); "no_code" when there is none.

    The last one, because models that revise their program put the final version last.
    """
    stripped = check_reply(text)
    blocks = [body for lang, body in code_blocks(stripped) if lang in (language, "py", "")]
    if not blocks or not blocks[-1].strip():
        raise ReplyParseError("no_code", f"no ```{language} block in the reply", text)
    return blocks[-1]


def extract_final_answer(text: str) -> str:
    """The final answer: the last \\boxed{...}, else a "#### x" / "The answer is x" line."""
    stripped = check_reply(text)
    boxed = _last_boxed(stripped)
    if boxed:
        return boxed
    found = [m.group("hash") or m.group("said") for m in _ANSWER_LINE.finditer(stripped)]
    found = [f.strip().rstrip(".").strip("$ ") for f in found if f and f.strip()]
    if not found:
        raise ReplyParseError("no_answer", "no \\boxed{} or final-answer line", text)
    return found[-1]


def _last_boxed(text: str) -> str | None:
    start = text.rfind(_BOXED)
    if start < 0:
        return None
    depth, i = 1, start + len(_BOXED)
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i:j].strip() or None
    return None


def _balanced_span(text: str) -> str | None:
    """The first complete {...} or [...] in `text`, string- and escape-aware."""
    opens = [i for i in (text.find("{"), text.find("[")) if i >= 0]
    if not opens:
        return None
    start = min(opens)
    stack: list[str] = []
    in_string = escaped = False
    for j in range(start, len(text)):
        ch = text[j]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return None
            if not stack:
                return text[start : j + 1]
    return None
