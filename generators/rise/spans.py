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
    """Sorted, non-overlapping {"start", "end"} spans of `rejected` covering every change.

    Lines are aligned first and characters only inside the runs of lines that differ: the
    texts share most of their lines, and a character-level match of whole solutions costs
    quadratic time. Outside the spans, `rejected` is the chosen text's characters in order.
    """
    old_lines, new_lines = chosen.split("\n"), rejected.split("\n")
    starts = [0]
    for line in new_lines:
        starts.append(starts[-1] + len(line) + 1)
    lines = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    changed: list[tuple[int, int]] = []
    for tag, i1, i2, j1, j2 in lines.get_opcodes():
        if tag == "equal":
            continue
        old, new = "\n".join(old_lines[i1:i2]), "\n".join(new_lines[j1:j2])
        base = min(starts[j1], len(rejected))
        if tag == "delete":
            changed.append((base, base))
            continue
        if tag == "insert":
            changed.append((base, base + len(new)))
            continue
        chars = difflib.SequenceMatcher(None, old, new, autojunk=False)
        for char_tag, _, _, k1, k2 in chars.get_opcodes():
            if char_tag != "equal":
                changed.append((base + k1, base + k2))
    spans: list[tuple[int, int]] = []
    for j1, j2 in changed:
        start, end = widen(rejected, j1, j2)
        if spans and start <= spans[-1][1]:
            spans[-1] = (min(start, spans[-1][0]), max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    return [{"start": s, "end": e} for s, e in spans]
