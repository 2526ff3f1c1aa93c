"""A reasoning model's reply, split into its thinking and its answer.

Reasoning models (Qwen3, DeepSeek-R1 and its distills, QwQ, gpt-oss) think before they answer.
Served plainly, the thinking comes first in `content` as a `<think>...</think>` block; their
chat templates often open the block in the prompt, so `content` starts inside it and only the
closing tag appears. Behind vLLM / SGLang with a reasoning parser, and on some hosted APIs,
it comes separately as the message's `reasoning_content` or `reasoning` field. Either way the
thinking is a draft, full of numbers that are not the answer: no parser may see it.

`split_reasoning` returns the answer (what parsers get) and the thinking (kept in the request
cache and counted, never parsed). A reply that is all thinking, cut off before the block
closed or closed with nothing after it, has no answer; the client rejects it as
`truncated_reasoning`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Split:
    answer: str
    reasoning: str
    # True when the reply holds thinking (a block or a reasoning field), even an empty one.
    thought: bool
    # True when a thinking block was opened and never closed (the reply was cut off in it).
    unterminated: bool


def split_reasoning(content: str, field: str | None, tags: Sequence[str]) -> Split:
    """The answer and the thinking of one reply.

    `field` is the server's separate reasoning text (None when it sent none). In `content`,
    only thinking *before* the answer is removed: leading blocks `<tag>...</tag>` for each
    name in `tags`, or, when the template opened the block, everything up to the first
    closing tag that has no opening tag before it. A tag later in the answer is the answer's.
    """
    parts = [field] if field else []
    thought = bool(field)
    text = content
    opening, closing = _patterns(tuple(tags))
    unterminated = False
    first = True
    while True:
        stripped = text.lstrip()
        opened = opening.match(stripped)
        if opened is not None:
            thought = True
            close = _closing_for(opened.group(1)).search(stripped, opened.end())
            if close is None:
                parts.append(stripped[opened.end() :])
                text, unterminated = "", True
                break
            parts.append(stripped[opened.end() : close.start()])
            text, first = stripped[close.end() :], False
            continue
        closed = closing.search(stripped) if first else None
        if closed is not None and opening.search(stripped, 0, closed.start()) is None:
            # The chat template opened the block in the prompt: the reply starts inside it.
            thought = True
            parts.append(stripped[: closed.start()])
            text, first = stripped[closed.end() :], False
            continue
        break
    reasoning = "\n".join(p.strip() for p in parts if p and p.strip())
    return Split(text.strip(), reasoning, thought, unterminated)


def reasoning_share(tokens_out: int, split: Split) -> int:
    """An estimate of the thinking's tokens when the server reports none: `tokens_out` in
    proportion to the thinking's share of the reply's characters."""
    total = len(split.reasoning) + len(split.answer)
    if not split.reasoning or total == 0:
        return 0
    return round(tokens_out * len(split.reasoning) / total)


@lru_cache(maxsize=16)
def _patterns(tags: tuple[str, ...]) -> tuple[re.Pattern[str], re.Pattern[str]]:
    names = "|".join(re.escape(t) for t in tags) or r"(?!)"
    return (
        re.compile(rf"<({names})>", re.IGNORECASE),
        re.compile(rf"</({names})>", re.IGNORECASE),
    )


@lru_cache(maxsize=16)
def _closing_for(tag: str) -> re.Pattern[str]:
    return re.compile(rf"</{re.escape(tag)}>", re.IGNORECASE)
