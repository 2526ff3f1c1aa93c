"""RISE preference pairs: inject one subtle error into one step of a verified solution.

Rule-based, after "Subtle Errors Matter" (RISE): pick a step with an equation, corrupt it with
one error type (`generators.rise.edits`), and pair the correct solution (chosen) with the
corrupted one (rejected). Everything before the edit is shared verbatim.

The edited step is recomputed so it is arithmetically consistent, and the changed value is
carried through every later equation and number that used it, down to the final
"The answer is N." line: a realistic slip in reasoning whose consequences a reader can follow.
A pair is kept only when, recomputed exactly from the rejected text alone, every changed step
holds and the final answer differs from the chosen one (and from the problem's answer). An edit
whose value feeds nothing later, or that cancels out, leaves the answer alone and is dropped
(`answer_unchanged`): a rejected solution that ends on the right answer would teach a model to
prefer one correct solution over another.

Every value the edit changes passes the plausibility rules of `generators.rise.plausible` and
is written as the number it replaces is written (`generators.rise.formatting`); a number
followed by a word does not cross 1 either ("1 apple" -> "2 apple"). Each failed candidate
counts its reason in `ErrorInjector.dropped`, and the next candidate is tried.

Values are matched by equality when propagating, so a changed value that also appears in the
question is never propagated (its later uses cannot be told apart from the given number):
such edits are dropped as `ambiguous_value`.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from mathsynth.generators.rise.edits import ERROR_TYPES, EditContext, ExpressionEdit, Replacement
from mathsynth.generators.rise.formatting import NumberStyle, render_like
from mathsynth.generators.rise.plausible import Dropped, UnitIndex, check_change, unit_after
from mathsynth.generators.rise.spans import widen
from mathsynth.generators.rise.steps import (
    Equation,
    Token,
    find_answer,
    find_equations,
    find_numbers,
    fraction_groups,
)
from mathsynth.numbers import parse_number, parse_number_or_none

# propagated: every step of the rejected solution holds, the error is in what was computed;
# miscalculated: the edited step's arithmetic is false (an LLM self-edit), its wrong result
# carried on. Both end on a wrong final answer.
Consequence = Literal["propagated", "miscalculated"]
_WORD_FOLLOWS = re.compile(r"\s+[A-Za-z]")


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

    def final_answer(self) -> Token | None:
        if self.answer_line is None:
            return None
        return find_answer(self.lines[self.answer_line])

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
    answer_before: str
    answer_after: str
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


def _edited_value(equation: Equation, edit: ExpressionEdit) -> Fraction:
    """The value of `equation`'s expression after `edit`."""
    try:
        return Equation(edit.tokens, equation.result).computed()
    except ZeroDivisionError:
        raise Dropped("division_by_zero", edit.description) from None


def _apply_to_line(line: str, replacements: Iterable[Replacement]) -> str:
    for start, end, text in sorted(replacements, reverse=True):
        line = line[:start] + text + line[end:]
    return line


def _edit_span(before: str, after: str) -> tuple[int, int]:
    """Span in `after` of what differs from `before` (one region: common prefix and suffix
    removed), grown to whole numbers and words as `spans.widen` grows the spans."""
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
    return widen(after, prefix, len(after) - suffix, before[prefix : len(before) - suffix])


class ErrorInjector:
    """Finds one confirmed error for a solution, deterministically for a given RNG state.

    `answer` is the problem's verified answer: a rejected solution must end on neither it nor
    the chosen solution's own final answer. `dropped` counts, by reason, every candidate edit
    that failed a rule (see the module docstring).
    """

    def __init__(self, question: str, solution: str, answer: str | None = None) -> None:
        self.question = question
        self.solution = solution
        self.parsed = ParsedSolution.parse(solution)
        self.question_values = {token.value for token in find_numbers(question)}
        self.style = NumberStyle.of(solution)
        # The final-answer line is written by its own rule (the answer column's canonical
        # form: "The answer is 3.5." after steps that write money as "3.50"), so it pads only
        # where it shows padding itself.
        index = self.parsed.answer_line
        self.answer_style = NumberStyle.of(self.parsed.lines[index]) if index is not None else None
        self.units = UnitIndex([question, solution])
        self.gold = parse_number_or_none(answer) if answer is not None else None
        final = self.parsed.final_answer()
        self.final = parse_number(final.text) if final is not None else None
        self.dropped: Counter[str] = Counter()

    @property
    def has_equations(self) -> bool:
        return any(self.parsed.equations[: self.parsed.step_count])

    @property
    def has_final_answer(self) -> bool:
        return self.final is not None

    def inject(self, rng: random.Random) -> InjectedError | None:
        """The first candidate edit, in a random order of error types and steps, that passes
        every rule; None when none does (the reasons are in `dropped`)."""
        for line, eq, edit in self._candidates(rng):
            try:
                return self._propagated(line, eq, edit)
            except Dropped as dropped:
                self.dropped[dropped.reason] += 1
        return None

    def _candidates(self, rng: random.Random) -> Iterator[tuple[int, Equation, ExpressionEdit]]:
        """Every edit of every correct equation, error type by error type, lazily."""
        feeding = self._feeding_answer()
        sites = [
            (line, eq)
            for line in range(self.parsed.step_count)
            for eq in self.parsed.equations[line]
            if eq.is_exact and (line, eq.start) in feeding
        ]
        types = list(ERROR_TYPES)
        rng.shuffle(types)
        rng.shuffle(sites)
        for error_type in types:
            for line, eq in sites:
                ctx = EditContext(self._context(line, eq), self.style, self.units, self.dropped)
                edits = ERROR_TYPES[error_type](eq, ctx)
                rng.shuffle(edits)
                for edit in edits:
                    yield line, eq, edit

    def _feeding_answer(self) -> set[tuple[int, int]]:
        """(line, start) of the equations whose result reaches the final answer through the
        values later steps use: an edit elsewhere could only leave the answer unchanged."""
        if self.final is None:
            return set()
        needed = {self.final}
        feeding = set()
        for line in reversed(range(self.parsed.step_count)):
            numbers = self.parsed.prose_numbers(line)
            needed |= {t.value for t in numbers}
            for eq in reversed(self.parsed.equations[line]):
                if eq.written not in needed:
                    continue
                feeding.add((line, eq.start))
                needed |= {t.value for t in eq.tokens if t.kind == "operand"}
                needed |= {
                    eq.tokens[i].value / eq.tokens[i + 2].value for i in fraction_groups(eq.tokens)
                }
        return feeding

    def _context(self, line: int, equation: Equation) -> list[Fraction]:
        """Values a solver could wrongly substitute: the givens, then earlier results."""
        values = [token.value for token in find_numbers(self.question)]
        for earlier in range(line + 1):
            for eq in self.parsed.equations[earlier]:
                if earlier < line or eq.end <= equation.start:
                    values.append(eq.written)
        return [v for v in values if v > 0]

    def _write(self, value: Fraction, token: Token, line: int, *, rounded: bool = False) -> str:
        """`value` written in place of `token` (a number in `line`), in the text's style.

        Raises Dropped for a value that cannot be written like `token` and for a number
        followed by a word that would cross 1 ("1 apple" -> "2 apple", "3 boxes" -> "1 boxes").
        """
        style = self.answer_style if line == self.parsed.answer_line else self.style
        text = render_like(value, token.text, style or self.style, rounded=rounded)
        before = parse_number(token.text.rstrip("%"))
        after = parse_number(text.rstrip("%"))
        follows = _WORD_FOLLOWS.match(self.parsed.lines[line], token.end)
        if (before == 1) != (after == 1) and follows:
            raise Dropped("inflection", f"{token.text} -> {text} before a word")
        return text

    def _propagated(self, line: int, equation: Equation, edit: ExpressionEdit) -> InjectedError:
        new_value = _edited_value(equation, edit)
        old = equation.written
        if new_value == old:
            raise Dropped("value_unchanged", f"{edit.description} leaves {equation.result.text}")
        self._unambiguous(old, line, equation.result.end, equation.result.text)
        check_change(old, new_value, "result")
        result_text = self._write(new_value, equation.result, line)
        rewrite = _Rewrite.of(line, edit.replacements)
        result_edit = (equation.result.start, equation.result.end, result_text)
        rewrite.add(line, *result_edit)
        changes = {old: parse_number(result_text)}
        for later in range(line, len(self.parsed.lines)):
            after = equation.result.start if later == line else 0
            self._carry(later, after, equation, changes, rewrite)
        own = _apply_to_line(self.parsed.lines[line], [*edit.replacements, result_edit])
        what = (edit.error_type, edit.description)
        return self._finish(line, rewrite, "propagated", what, own, set())

    def _carry(
        self,
        line: int,
        after: int,
        edited: Equation | None,
        changes: dict[Fraction, Fraction],
        rewrite: _Rewrite,
    ) -> None:
        """Carry changed values through one line's equations and numbers, left to right.

        Raises Dropped when a changed value cannot be carried: a later step that did not hold
        to begin with, two different new texts for one number (`uncarried`), or a carried
        value that fails a rule."""
        items: list[Equation | Token] = [
            *(eq for eq in self.parsed.equations[line] if eq.start >= after and eq != edited),
            *(t for t in self.parsed.prose_numbers(line) if t.start >= after),
        ]
        items.sort(key=lambda item: item.start)
        for item in items:
            if isinstance(item, Token):
                if item.value in changes:
                    text = self._write(changes[item.value], item, line)
                    self._add(rewrite, line, item, text)
                continue
            tokens = list(item.tokens)
            in_fraction: set[int] = set()
            for i in fraction_groups(item.tokens):
                numerator, denominator = tokens[i], tokens[i + 2]
                value = numerator.value / denominator.value
                if value not in changes:
                    continue
                written = Token("operand", f"{numerator.text}/{denominator.text}", 0, 0)
                written = Token("operand", written.text, numerator.start, denominator.end)
                text = self._write(changes[value], written, line)
                self._add(rewrite, line, written, text)
                top, _, bottom = text.partition("/")
                tokens[i] = Token("operand", top, numerator.start, numerator.end)
                tokens[i + 2] = Token("operand", bottom, denominator.start, denominator.end)
                in_fraction |= {i, i + 2}
            for i, token in enumerate(tokens):
                if i in in_fraction:
                    continue
                if token.kind == "operand" and token.value in changes:
                    text = self._write(changes[token.value], token, line)
                    self._add(rewrite, line, token, text)
                    tokens[i] = Token("operand", text, token.start, token.end)
            if tokens == list(item.tokens):
                continue
            if not item.is_correct:
                raise Dropped("uncarried", f"step {line} does not hold in the chosen solution")
            try:
                value = item.with_tokens(tokens).computed()
            except ZeroDivisionError:
                raise Dropped("division_by_zero", f"carried into step {line}") from None
            check_change(item.written, value, "carried result")
            text = self._write(value, item.result, line, rounded=not item.is_exact)
            self._add(rewrite, line, item.result, text)
            written = parse_number(text)
            if written != item.written:
                self._unambiguous(item.written, line, item.result.end, item.result.text)
                changes[item.written] = written

    def _unambiguous(self, value: Fraction, line: int, after: int, text: str) -> None:
        """Raise Dropped("ambiguous_value") when a changed result is also a given of the
        question and a later step uses that number: it cannot be told whether that step
        uses the result (and must change) or the given (and must not). The final-answer
        line always states the result."""
        if value not in self.question_values:
            return
        for later in range(line, self.parsed.step_count):
            start = after if later == line else 0
            numbers = [
                *(t for eq in self.parsed.equations[later] for t in eq.tokens),
                *self.parsed.prose_numbers(later),
            ]
            for token in numbers:
                if token.kind == "operand" and token.start >= start and token.value == value:
                    raise Dropped(
                        "ambiguous_value", f"{text} is also a given, used in step {later}"
                    )

    @staticmethod
    def _add(rewrite: _Rewrite, line: int, token: Token, text: str) -> None:
        if not rewrite.add(line, token.start, token.end, text):
            raise Dropped("uncarried", f"step {line}: {token.text} would change in two ways")

    def _finish(
        self,
        line: int,
        rewrite: _Rewrite,
        consequence: Consequence,
        what: tuple[str, str],
        own_step: str,
        false_steps: set[int],
    ) -> InjectedError:
        """Apply the rewrite and confirm it from the rejected text alone.

        `what` is (error type, description); `own_step` is the edited step with only the edit
        itself applied (no carried values), which is what the edit span points at;
        `false_steps` the lines whose arithmetic is allowed not to hold (a miscalculation).
        """
        lines = rewrite.apply(self.parsed.lines)
        before, after = self._confirm(lines, false_steps)
        start, end = _edit_span(self.parsed.lines[line], own_step)
        offset = self.parsed.offset(line)
        return InjectedError(
            rejected="\n".join(lines),
            error_type=what[0],
            step_index=line,
            edit_start=offset + start,
            edit_end=offset + end,
            consequence=consequence,
            description=what[1],
            original_step=self.parsed.lines[line],
            edited_step=lines[line],
            answer_before=before,
            answer_after=after,
            detail=(
                f"recomputed: step {line} changed, every changed step holds"
                + (f" except step {sorted(false_steps)[0]}" if false_steps else "")
                + f"; final answer {before} -> {after}"
            ),
        )

    def _confirm(self, lines: list[str], false_steps: set[int]) -> tuple[str, str]:
        """(chosen, rejected) final answer texts, after an exact recomputation of every changed
        line of the rejected solution.

        Raises Dropped("no_final_answer") when the rejected text has no final-answer line,
        Dropped("answer_unchanged") when its answer equals the chosen or the verified one, and
        Dropped("inconsistent") when a changed step (other than `false_steps`) does not hold
        or no longer reads as the same number of equations.
        """
        chosen = self.parsed.final_answer()
        index = self.parsed.answer_line
        rejected = find_answer(lines[index]) if index is not None else None
        if chosen is None or rejected is None:
            raise Dropped("no_final_answer", "no 'The answer is N.' line")
        value = parse_number(rejected.text)
        if value in (self.final, self.gold):
            raise Dropped("answer_unchanged", f"the rejected solution still answers {value}")
        # Where the chosen answer is the last step's result, the rejected one must be too: an
        # answer line that no longer follows from the steps above it is not an error a
        # model makes while reasoning (a negative result carried by its digits did this).
        before = _last_result(self.parsed.equations[:index])
        after = _last_result(find_equations(line) for line in lines[:index])
        if before == parse_number(chosen.text) and after != value:
            raise Dropped("inconsistent", f"the answer {value} is not the last step's {after}")
        for i, (old, new) in enumerate(zip(self.parsed.lines, lines, strict=True)):
            if old == new or i in false_steps:
                continue
            equations = find_equations(new)
            if len(equations) != len(self.parsed.equations[i]):
                raise Dropped("inconsistent", f"step {i} no longer reads as the same equations")
            wrong = [eq for eq in equations if not eq.is_correct]
            if wrong:
                raise Dropped("inconsistent", f"step {i}: {new[wrong[0].start : wrong[0].end]}")
        return chosen.text, rejected.text

    def confirm_rewrite(self, line: int, new_step: str, error_type: str) -> InjectedError:
        """Confirm a step rewritten by someone else (an LLM): it must change the step's results
        (consistently: propagated, or with false arithmetic: miscalculated), keep its units
        and number formatting, and lead, carried through the later steps, to a wrong answer.

        Raises Dropped with the reason otherwise (also counted in `dropped`).
        """
        try:
            return self._rewritten(line, new_step, error_type)
        except Dropped as dropped:
            self.dropped[dropped.reason] += 1
            raise

    def _rewritten(self, line: int, new_step: str, error_type: str) -> InjectedError:
        original = self.parsed.lines[line]
        old_equations = self.parsed.equations[line]
        new_equations = find_equations(new_step)
        if len(new_equations) != len(old_equations):
            raise Dropped("unmatched_equations", "cannot tell which new value replaces which")
        if sorted(_units_of(original)) != sorted(_units_of(new_step)):
            raise Dropped("unit_changed", f"units {_units_of(new_step)} in the rewritten step")
        for token in find_numbers(new_step):
            if ("," in token.text and not self.style.thousands) or render_like(
                token.value, token.text, self.style
            ) != token.text:
                raise Dropped("format_changed", f"{token.text} is not written like the text")
        changes: dict[Fraction, Fraction] = {}
        false_steps: set[int] = set()
        for old, new in zip(old_equations, new_equations, strict=True):
            if not new.is_correct:
                false_steps.add(line)
            if new.written != old.written:
                self._unambiguous(old.written, line, old.result.end, old.result.text)
                check_change(old.written, new.written, "result")
                changes[old.written] = new.written
        if not changes:
            raise Dropped("value_unchanged", "the rewritten step keeps every result")
        rewrite = _Rewrite()
        rewrite.add(line, 0, len(original), new_step)
        for later in range(line + 1, len(self.parsed.lines)):
            self._carry(later, 0, None, changes, rewrite)
        consequence: Consequence = "miscalculated" if false_steps else "propagated"
        what = (error_type, "step rewritten")
        return self._finish(line, rewrite, consequence, what, new_step, false_steps)


def _units_of(step: str) -> list[str]:
    """The unit words written after the numbers of a step."""
    units = []
    for token in find_numbers(step):
        unit = unit_after(step, token.end)
        if unit is not None:
            units.append(unit)
    return units


def _last_result(steps: Iterable[Sequence[Equation]]) -> Fraction | None:
    """The written result of the last equation of `steps` (each a line's equations)."""
    last = None
    for equations in steps:
        if equations:
            last = equations[-1]
    return parse_number(last.result.text) if last is not None else None
