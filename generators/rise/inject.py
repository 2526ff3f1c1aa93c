"""RISE preference pairs: inject one subtle error into one step of a verified solution.

Rule-based, after "Subtle Errors Matter" (RISE): pick a step with an equation, corrupt it with
one error type (`generators.rise.edits`), and pair the correct solution (chosen) with the
corrupted one (rejected). Everything before the edit is shared verbatim.

How the error plays out in the rejected text (our choice, preferred first):

1. **propagated** - the edited step is recomputed so it is arithmetically consistent, and the
   changed value is carried through every later equation and number that used it, down to the
   final "The answer is N." line. The error is then a realistic wrong-reasoning slip, and the
   recomputation must show a changed final answer or the edit is discarded.
2. **false_step** - fallback when no edit reaches the final answer (e.g. the value feeds
   nothing later): only the expression is corrupted, its written result is kept, so the step
   is arithmetically false; later steps stay as they were.

A pair is `verified` by "recompute" only after that check ran on the rejected text. Values are
matched by equality when propagating, so a value that also appears in the question is never
propagated (its later uses cannot be told apart from the given number).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

from mathsynth.generators.rise.edits import ERROR_TYPES, ExpressionEdit, Replacement
from mathsynth.generators.rise.steps import (
    Equation,
    Token,
    find_answer,
    find_equations,
    find_numbers,
    render_number,
    render_rounded,
)
from mathsynth.numbers import parse_number

if TYPE_CHECKING:
    pass

Consequence = Literal["propagated", "false_step"]


@dataclass(frozen=True, slots=True)
class ParsedSolution:
    """A solution split into steps (lines), with each step's equations and the answer line."""

    lines: tuple[str, ...]
    equations: tuple[tuple[Equation, ...], ...]
    answer_line: int | None

    @classmethod
    def parse(cls, solution: str) -> ParsedSolution:
        lines = tuple(solution.split("\n"))
        equations = tuple(tuple(find_equations(line)) for line in lines)
        last = max((i for i, line in enumerate(lines) if line.strip()), default=None)
        answer_line = last if last is not None and find_answer(lines[last]) else None
        return cls(lines, equations, answer_line)

    @property
    def step_count(self) -> int:
        """Lines that may be edited: everything before the final answer line."""
        return self.answer_line if self.answer_line is not None else len(self.lines)

    def offset(self, line: int) -> int:
        return sum(len(text) + 1 for text in self.lines[:line])

    def prose_numbers(self, line: int) -> list[Token]:
        """Numbers in a line that are not part of any of its equations."""
        spans = [(eq.start, eq.end) for eq in self.equations[line]]
        return [
            token
            for token in find_numbers(self.lines[line])
            if not any(start <= token.start < end for start, end in spans)
        ]


@dataclass(frozen=True, slots=True)
class InjectedError:
    """A confirmed error: the rejected text and where and how it differs from the chosen one."""

    rejected: str
    error_type: str
    step_index: int
    edit_start: int
    edit_end: int
    consequence: Consequence
    description: str
    original_step: str
    edited_step: str
    answer_before: str | None
    answer_after: str | None
    detail: str


class _Rewrite:
    """Pending (start, end) -> text rewrites per line; refuses two different texts for one span."""

    def __init__(self) -> None:
        self.by_line: dict[int, dict[tuple[int, int], str]] = {}

    @classmethod
    def of(cls, line: int, replacements: Iterable[Replacement]) -> _Rewrite:
        """A rewrite holding one edit's own replacements in `line`."""
        rewrite = cls()
        for start, end, text in replacements:
            rewrite.add(line, start, end, text)
        return rewrite

    def add(self, line: int, start: int, end: int, text: str) -> bool:
        spans = self.by_line.setdefault(line, {})
        if spans.get((start, end), text) != text:
            return False
        spans[(start, end)] = text
        return True

    def apply(self, lines: tuple[str, ...]) -> list[str]:
        out = list(lines)
        for line, spans in self.by_line.items():
            text = out[line]
            for (start, end), new in sorted(spans.items(), reverse=True):
                text = text[:start] + new + text[end:]
            out[line] = text
        return out


def _edited_value(equation: Equation, edit: ExpressionEdit) -> Fraction | None:
    """The value of `equation`'s expression after `edit`; None when it divides by zero."""
    try:
        return Equation(edit.tokens, equation.result).computed()
    except ZeroDivisionError:
        return None


def _plausible(old: Fraction, new: Fraction) -> bool:
    """A subtle error keeps the sign and rough size of a quantity (no -3 apples, no zero)."""
    if new == old:
        return False
    if old >= 0 > new or (old != 0 and new == 0):
        return False
    return abs(new) <= 100 * max(abs(old), 1)


def _format_value(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):g}"


def _apply_to_line(line: str, replacements: Iterable[Replacement]) -> str:
    for start, end, text in sorted(replacements, reverse=True):
        line = line[:start] + text + line[end:]
    return line


def _edit_span(before: str, after: str) -> tuple[int, int]:
    """Span in `after` of what differs from `before`, widened to whole numbers/words."""
    prefix = 0
    limit = min(len(before), len(after))
    while prefix < limit and before[prefix] == after[prefix]:
        prefix += 1
    suffix = 0
    while (
        suffix < limit - prefix
        and before[len(before) - 1 - suffix] == after[len(after) - 1 - suffix]
    ):
        suffix += 1
    start, end = prefix, len(after) - suffix

    def inside(i: int) -> bool:
        char = after[i]
        if char.isalnum() or char == "$":
            return True
        # "1,200" and "0.25" are one number; a sentence's final "." is not part of it.
        return char in ".," and 0 < i < len(after) - 1 and after[i + 1].isdigit()

    while start > 0 and inside(start - 1):
        start -= 1
    while end < len(after) and inside(end):
        end += 1
    if start == end:
        # A pure deletion: point at the token that now stands where the deleted text was.
        while end < len(after) and after[end].isspace():
            end += 1
        while end < len(after) and not after[end].isspace():
            end += 1
    return start, end


class ErrorInjector:
    """Finds one confirmed error for a solution, deterministically for a given RNG state."""

    def __init__(self, question: str, solution: str) -> None:
        self.question = question
        self.solution = solution
        self.parsed = ParsedSolution.parse(solution)
        self.question_values = {token.value for token in find_numbers(question)}

    @property
    def has_equations(self) -> bool:
        return any(self.parsed.equations[: self.parsed.step_count])

    def inject(self, rng: random.Random) -> InjectedError | None:
        """Try error types and steps in a random order; propagated errors before false steps."""
        tried: list[tuple[int, Equation, ExpressionEdit]] = []
        for line, eq, edit in self._candidates(rng):
            tried.append((line, eq, edit))
            found = self._propagated(line, eq, edit)
            if found is not None:
                return found
        for line, eq, edit in tried:
            found = self._false_step(line, eq, edit)
            if found is not None:
                return found
        return None

    def _candidates(self, rng: random.Random) -> Iterator[tuple[int, Equation, ExpressionEdit]]:
        """Every edit of every correct equation, error type by error type, lazily."""
        sites = [
            (line, eq)
            for line in range(self.parsed.step_count)
            for eq in self.parsed.equations[line]
            if eq.is_exact
        ]
        types = list(ERROR_TYPES)
        rng.shuffle(types)
        rng.shuffle(sites)
        for error_type in types:
            for line, eq in sites:
                edits = ERROR_TYPES[error_type](eq, self._context(line, eq))
                rng.shuffle(edits)
                for edit in edits:
                    yield line, eq, edit

    def _context(self, line: int, equation: Equation) -> list[Fraction]:
        """Values a solver could wrongly substitute: the givens, then earlier results."""
        values = [token.value for token in find_numbers(self.question)]
        for earlier in range(line + 1):
            for eq in self.parsed.equations[earlier]:
                if earlier < line or eq.end <= equation.start:
                    values.append(eq.written)
        return [v for v in values if v > 0]

    def _propagated(
        self, line: int, equation: Equation, edit: ExpressionEdit
    ) -> InjectedError | None:
        new_value = _edited_value(equation, edit)
        if new_value is None:
            return None
        old = equation.written
        result_text = render_number(new_value, equation.result.text)
        if result_text is None or not _plausible(old, new_value) or old in self.question_values:
            return None
        rewrite = _Rewrite.of(line, edit.replacements)
        result_edit = (equation.result.start, equation.result.end, result_text)
        rewrite.add(line, *result_edit)
        changes = {old: parse_number(result_text)}
        for later in range(line, len(self.parsed.lines)):
            after = equation.result.start if later == line else 0
            if not self._carry(later, after, equation, changes, rewrite):
                return None
        own = _apply_to_line(self.parsed.lines[line], [*edit.replacements, result_edit])
        what = (edit.error_type, edit.description)
        return self._finish(line, rewrite, "propagated", what, own, "")

    def _carry(
        self,
        line: int,
        after: int,
        edited: Equation | None,
        changes: dict[Fraction, Fraction],
        rewrite: _Rewrite,
    ) -> bool:
        """Carry changed values through one line's equations and numbers, left to right."""
        items: list[Equation | Token] = [
            *(eq for eq in self.parsed.equations[line] if eq.start >= after and eq != edited),
            *(t for t in self.parsed.prose_numbers(line) if t.start >= after),
        ]
        items.sort(key=lambda item: item.start)
        for item in items:
            if isinstance(item, Token):
                if item.value in changes:
                    text = render_number(changes[item.value], item.text)
                    if text is None or not rewrite.add(line, item.start, item.end, text):
                        return False
                continue
            tokens = list(item.tokens)
            for i, token in enumerate(tokens):
                if token.kind == "operand" and token.value in changes:
                    text = render_number(changes[token.value], token.text)
                    if text is None or not rewrite.add(line, token.start, token.end, text):
                        return False
                    tokens[i] = Token("operand", text, token.start, token.end)
            if tokens == list(item.tokens):
                continue
            if not item.is_correct:
                return False  # cannot recompute a step that was not right to begin with
            try:
                value = item.with_tokens(tokens).computed()
            except ZeroDivisionError:
                return False
            text = (
                render_number(value, item.result.text)
                if item.is_exact
                else render_rounded(value, item.result.text)
            )
            if text is None or (value != item.written and not _plausible(item.written, value)):
                return False
            if not rewrite.add(line, item.result.start, item.result.end, text):
                return False
            written = parse_number(text)
            if written != item.written and item.written not in self.question_values:
                changes[item.written] = written
        return True

    def _false_step(
        self, line: int, equation: Equation, edit: ExpressionEdit
    ) -> InjectedError | None:
        new_value = _edited_value(equation, edit)
        if new_value is None or new_value == equation.written:
            return None
        rewrite = _Rewrite.of(line, edit.replacements)
        own = _apply_to_line(self.parsed.lines[line], edit.replacements)
        detail = (
            f"step {line}: expression evaluates to {_format_value(new_value)} "
            f"but the step writes {equation.result.text}"
        )
        return self._finish(
            line, rewrite, "false_step", (edit.error_type, edit.description), own, detail
        )

    def _finish(
        self,
        line: int,
        rewrite: _Rewrite,
        consequence: Consequence,
        what: tuple[str, str],
        own_step: str,
        false_detail: str,
    ) -> InjectedError | None:
        """Apply the rewrite and confirm it; None when a propagated edit left the answer alone.

        `what` is (error type, description); `own_step` is the edited step with only the edit
        itself applied (no carried values), which is what the edit span points at.
        """
        lines = rewrite.apply(self.parsed.lines)
        original = self.parsed.lines[line]
        answer_before = answer_after = None
        if self.parsed.answer_line is not None:
            before_token = find_answer(self.parsed.lines[self.parsed.answer_line])
            after_token = find_answer(lines[self.parsed.answer_line])
            answer_before = before_token.text if before_token else None
            answer_after = after_token.text if after_token else None
        if consequence == "propagated":
            if answer_before is None or answer_after is None:
                return None
            if parse_number(answer_before) == parse_number(answer_after):
                return None
            detail = f"step {line} changed; final answer {answer_before} -> {answer_after}"
        else:
            detail = false_detail
        start, end = _edit_span(original, own_step)
        offset = self.parsed.offset(line)
        return InjectedError(
            rejected="\n".join(lines),
            error_type=what[0],
            step_index=line,
            edit_start=offset + start,
            edit_end=offset + end,
            consequence=consequence,
            description=what[1],
            original_step=original,
            edited_step=lines[line],
            answer_before=answer_before,
            answer_after=answer_after,
            detail=detail,
        )

    def confirm_rewrite(self, line: int, new_step: str, error_type: str) -> InjectedError | None:
        """Confirm a step rewritten by someone else (an LLM): None unless provably wrong.

        Proof is either an equation in `new_step` that does not hold (false_step, later steps
        kept) or equations that hold but produce different values, carried through the later
        steps to a changed final answer (propagated). Anything else cannot be checked here.
        """
        original = self.parsed.lines[line]
        new_equations = find_equations(new_step)
        rewrite = _Rewrite()
        rewrite.add(line, 0, len(original), new_step)
        what = (error_type, "step rewritten")
        wrong = [eq for eq in new_equations if not eq.is_correct]
        if wrong:
            detail = f"step {line}: {new_step[wrong[0].start : wrong[0].end]} does not hold"
            return self._finish(line, rewrite, "false_step", what, new_step, detail)
        old_equations = self.parsed.equations[line]
        if len(new_equations) != len(old_equations):
            return None  # cannot tell which new value replaces which old one
        changes = {
            old.written: new.written
            for old, new in zip(old_equations, new_equations, strict=True)
            if old.written != new.written
            and old.written not in self.question_values
            and _plausible(old.written, new.written)
        }
        if not changes:
            return None
        for later in range(line + 1, len(self.parsed.lines)):
            if not self._carry(later, 0, None, changes, rewrite):
                return None
        return self._finish(line, rewrite, "propagated", what, new_step, "")
