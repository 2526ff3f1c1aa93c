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


def _token_char(char: str) -> bool:
    return char.isalnum() or char in ".,$"


def widen(text: str, start: int, end: int, removed: str = "") -> tuple[int, int]:
    """[start, end) of `text` (which replaced `removed`), grown to the whole words and
    numbers it cuts into: "4" -> "40" marks "40", "1200" -> "120" marks "120".

    A boundary is grown over when the word beside it continues into the changed text (or
    into the removed one). A pure deletion between words ("has 32 + 55" -> "has 55") marks
    the token that now stands where the deleted text was, or the last one at the very end.
    """
    left = (
        start > 0
        and _inside(text, start - 1)
        and ((start < end and _inside(text, start)) or _token_char(removed[:1]))
    )
    right = (
        end < len(text)
        and _inside(text, end)
        and ((start < end and _inside(text, end - 1)) or _token_char(removed[-1:]))
    )
    if start == end and 0 < start < len(text) and _inside(text, start - 1) and _inside(text, start):
        left = right = True  # deleted from inside a word or number: mark all of it
    if start == end and not (left or right):
        # From the deletion point over the following whitespace and token, so the text
        # around the span is the chosen text's, in order.
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
    if left:
        while start > 0 and _inside(text, start - 1):
            start -= 1
    if right:
        while end < len(text) and _inside(text, end):
            end += 1
    return start, end


def diff_spans(chosen: str, rejected: str) -> list[dict[str, int]]:
    """Sorted, non-overlapping {"start", "end"} spans of `rejected` covering every change.

    Lines are aligned first and characters only inside the lines that differ: the texts share
    most of their lines, and a character-level match of whole solutions costs quadratic time
    and can pair a step with a different step that happens to read alike. A run of changed
    lines that has as many lines on both sides (an edit and the steps it carries into) is
    compared line by line. Outside the spans, `rejected` is the chosen text's characters in
    order.
    """
    old_lines, new_lines = chosen.split("\n"), rejected.split("\n")
    starts = [0]
    for line in new_lines:
        starts.append(starts[-1] + len(line) + 1)
    lines = difflib.SequenceMatcher(None, old_lines, new_lines, autojunk=False)
    changed: list[tuple[int, int, str]] = []
    for tag, i1, i2, j1, j2 in lines.get_opcodes():
        if tag == "equal":
            continue
        base = min(starts[j1], len(rejected))
        if tag == "delete":
            changed.append((base, base, "\n".join(old_lines[i1:i2]) + "\n"))
            continue
        if tag == "replace" and i2 - i1 == j2 - j1:
            blocks = [
                (old_lines[i], new_lines[j], starts[j])
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True)
            ]
        else:
            blocks = [("\n".join(old_lines[i1:i2]), "\n".join(new_lines[j1:j2]), base)]
        for old, new, offset in blocks:
            chars = difflib.SequenceMatcher(None, old, new, autojunk=False)
            for char_tag, k1, k2, m1, m2 in chars.get_opcodes():
                if char_tag != "equal":
                    changed.append((offset + m1, offset + m2, old[k1:k2]))
    spans: list[tuple[int, int]] = []
    for j1, j2, deleted in changed:
        start, end = widen(rejected, j1, j2, deleted)
        if spans and start <= spans[-1][1]:
            spans[-1] = (min(start, spans[-1][0]), max(end, spans[-1][1]))
        else:
            spans.append((start, end))
    return [{"start": s, "end": e} for s, e in spans]
