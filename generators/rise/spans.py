"""Where a rejected solution differs from the chosen one, as character spans of the rejected
text: the regions a token-weighted DPO loss (RISE) focuses on.

Every character of the rejected text that is not part of a run it shares with the chosen
text lies inside a span, and a deletion (text of the chosen side that the rejected side
lacks) is covered by the span of the token that now stands where it was. Spans are widened
to whole numbers and words, so "4" → "40" marks "40", never "0".
"""

from __future__ import annotations

import difflib


def _inside(text: str, i: int) -> bool:
    char = text[i]
    if char.isalnum() or char == "$":
        return True
    # "1,200" and "0.25" are one number; a sentence's final "." is not part of it.
    return char in ".," and 0 < i < len(text) - 1 and text[i + 1].isdigit()


def widen(text: str, start: int, end: int) -> tuple[int, int]:
    """[start, end) grown to whole words / numbers of `text`; an empty span (a deletion)
    becomes the token at that position (or the one before it at the end of the text)."""
    while start > 0 and _inside(text, start - 1):
        start -= 1
    while end < len(text) and _inside(text, end):
        end += 1
    if start == end:
        while end < len(text) and text[end].isspace():
            end += 1
        while end < len(text) and not text[end].isspace():
            end += 1
        if start == end:  # deleted at the very end: mark the last token
            while start > 0 and text[start - 1].isspace():
                start -= 1
            while start > 0 and not text[start - 1].isspace():
                start -= 1
    return start, end


def diff_spans(chosen: str, rejected: str) -> list[dict[str, int]]:
    """Sorted, non-overlapping {"start", "end"} spans of `rejected` covering every change."""
    matcher = difflib.SequenceMatcher(None, chosen, rejected, autojunk=False)
    spans: list[tuple[int, int]] = []
    for tag, _, _, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        start, end = widen(rejected, j1, j2)
        if spans and start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    return [{"start": s, "end": e} for s, e in spans]
