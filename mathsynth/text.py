"""Text normalisation shared by deduplication (and every other comparison of questions)."""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")


def question_key(text: str) -> str:
    """The form two questions must share to count as the same question: Unicode NFKC,
    case folded, runs of whitespace as one space, no leading or trailing space."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


# Word tokens for n-gram comparisons: letters and digits, with punctuation, LaTeX backslashes
# and symbols dropped (lm-evaluation-harness's decontamination normalises the same way).
_WORD = re.compile(r"\w+")
# Tokens that are a number however it is written, masked so that a question whose numbers
# were changed (GSM8K+/MATH+ variants, InfinityMATH instantiations) reads the same.
_NUMBER_WORDS = frozenset(
    ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
    + ("eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen")
    + ("eighteen", "nineteen", "twenty", "thirty", "forty", "fifty", "sixty", "seventy")
    + ("eighty", "ninety", "hundred", "thousand", "million", "billion", "dozen")
)
NUMBER_MASK = "<n>"


def words(text: str) -> list[str]:
    """The normalised word tokens of `text` (the `question_key` form, split on non-word
    characters): what word n-grams are made of."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def masked_words(text: str) -> list[str]:
    """`words(text)` with every number masked (`mask_numbers`)."""
    return mask_numbers(words(text))


def mask_numbers(tokens: list[str]) -> list[str]:
    """Word tokens with every number masked: each run of number tokens (digits, or number
    words such as "twenty five") becomes one `NUMBER_MASK`, so "3.5 kg", "12 kg" and
    "twenty five kg" all read "<n> kg" (a decimal point or a hyphen splits a number into
    several tokens; collapsing the run keeps the word positions aligned)."""
    out: list[str] = []
    for token in tokens:
        if token.isdigit() or token in _NUMBER_WORDS:
            if out and out[-1] == NUMBER_MASK:
                continue
            token = NUMBER_MASK
        out.append(token)
    return out


def word_ngrams(tokens: list[str], n: int) -> list[str]:
    """The word n-grams of `tokens`, space-joined, in order (duplicates kept). A text shorter
    than `n` words is one n-gram of all its words, so that it can still be compared."""
    if len(tokens) <= n:
        return [" ".join(tokens)] if tokens else []
    return [" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
