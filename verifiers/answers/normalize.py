"""String clean-up applied to answers before any parsing.

Each step only removes notation that cannot change the value: answer wrappers (`\\boxed{}`,
`$...$`), spacing macros, `\\left`/`\\right`, and a few LaTeX spellings that math-verify misreads.
"""

from __future__ import annotations

import re

_BOX_COMMANDS = ("\\boxed", "\\fbox")
_DELIMITERS = (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]"))
_SPACING = re.compile(r"\\[,;:! ]|\\q?quad\b|~")
_LEFT_RIGHT = re.compile(r"\\(?:left|right)\b\s*")
_FRAC_VARIANTS = re.compile(r"\\[dt]frac\b")
# `\sqrt(2)` is not LaTeX, but models write it; math-verify reads it as a bare `\sqrt`
# and silently drops the argument (Math-Verify issue #41), so rewrite it as `\sqrt{2}`.
_SQRT_PAREN = re.compile(r"\\sqrt\s*\(([^()]*)\)")
# `\text{13}` hides a number from math-verify's parser (Math-Verify issue #37).
_TEXT_NUMBER = re.compile(r"\\(?:text|textbf|mathrm|mbox)\{\s*(-?[\d.,/]+)\s*\}")
# `\mathrm{e}` (upright Euler e) makes math-verify truncate the expression (issue #14).
_UPRIGHT_LETTER = re.compile(r"\\mathrm\{\s*([A-Za-z])\s*\}")


def last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` / `\\fbox{...}` in text, braces matched; None if absent.

    An unbalanced box (truncated output) also gives None: a cut-off answer is no answer.
    """
    start = max(text.rfind(cmd) for cmd in _BOX_COMMANDS)
    if start < 0:
        return None
    open_at = text.find("{", start)
    if open_at < 0:
        return None
    depth = 0
    for i in range(open_at, len(text)):
        ch = text[i]
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[open_at + 1 : i]
    return None


def strip_delimiters(text: str) -> str:
    """Remove one pair of enclosing math delimiters (`$..$`, `$$..$$`, `\\(..\\)`, `\\[..\\]`).

    A lone leading `$` (money) is kept: only a matching pair at both ends is a delimiter.
    """
    s = text.strip()
    for left, right in _DELIMITERS:
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
            inner = s[len(left) : -len(right)]
            if left == "$" and "$" in inner:
                # `$5 and $6` is two money amounts, not a math span.
                continue
            return inner.strip()
    return s


def clean_latex(text: str) -> str:
    """Drop spacing macros and `\\left`/`\\right`; fix `\\sqrt(x)`, `\\dfrac`, `\\text{13}`."""
    s = _SPACING.sub("", text)
    s = _LEFT_RIGHT.sub("", s)
    s = _FRAC_VARIANTS.sub(r"\\frac", s)
    s = _SQRT_PAREN.sub(r"\\sqrt{\1}", s)
    s = _TEXT_NUMBER.sub(r"\1", s)
    s = _UPRIGHT_LETTER.sub(r"\1", s)
    return s.strip()


def answer_core(text: str) -> str:
    """The bare answer: the last boxed content if any, without delimiters, LaTeX cleaned."""
    s = text.strip()
    boxed = last_boxed(s)
    if boxed is not None:
        s = boxed
    return clean_latex(strip_delimiters(s))
