"""Text normalisation shared by deduplication (and every other comparison of questions)."""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")


def question_key(text: str) -> str:
    """The form two questions must share to count as the same question: Unicode NFKC,
    case folded, runs of whitespace as one space, no leading or trailing space."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
