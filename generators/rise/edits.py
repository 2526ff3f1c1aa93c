"""The five rule-based RISE error types, as candidate edits of one equation in a step.

Each function lists every concrete way to inject its error into an equation (which operand,
which new value, which operator). They only rewrite the expression; whether an edit really
changes the outcome, and how the result and later steps follow, is decided in
`generators.rise.inject`. A candidate that already fails a rule of `generators.rise.plausible`
here (an operand off by more than the allowed factor, a number that cannot be written like
the one it replaces, a substitute of another kind) is not listed, and its reason is counted
in `EditContext.dropped`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction

from mathsynth.generators.rise.formatting import NumberStyle, render_like
from mathsynth.generators.rise.plausible import Dropped, UnitIndex, check_change, same_kind
from mathsynth.generators.rise.steps import Equation, Token, decimals, fraction_groups
from mathsynth.numbers import parse_number

Replacement = tuple[int, int, str]

# Alternatives for each operator, written in the same style as the original.
_OPERATOR_SWAPS = {
    "+": ("-", "*", "/"),
    "-": ("+", "*", "/"),
    "*": ("/", "+", "-"),
    "/": ("*", "+", "-"),
    "x": ("/", "+", "-"),
    "×": ("÷", "+", "−"),
    "÷": ("×", "+", "−"),
    "−": ("+", "×", "÷"),
    "–": ("+", "*", "/"),
}


@dataclass(slots=True)
class EditContext:
    """What the edit makers need besides the equation: the values a solver could wrongly
    substitute (givens and earlier results), how the text writes numbers, the units values
    are written with, and the counter of candidates dropped by a rule."""

    values: list[Fraction]
    style: NumberStyle
    units: UnitIndex
    dropped: Counter[str] = field(default_factory=Counter)

    def write(self, value: Fraction, like: str) -> str | None:
        """`value` written like `like`, or None (counted) when it cannot be."""
        try:
            return render_like(value, like, self.style)
        except Dropped as dropped:
            self.dropped[dropped.reason] += 1
            return None

    def plausible(self, old: Fraction, new: Fraction) -> bool:
        try:
            check_change(old, new, "operand")
        except Dropped as dropped:
            self.dropped[dropped.reason] += 1
            return False
        return True

    def unit_of(self, equation: Equation, index: int) -> set[str]:
        """The unit of operand `index`: written next to it in the step, else the units its
        value is written with elsewhere in the problem."""
        tokens = equation.tokens
        written = tokens[index + 1].text if index + 1 < len(tokens) else None
        if written is not None and tokens[index + 1].kind != "unit":
            written = None
        return self.units.of(tokens[index].value, written)

    def compatible(self, a: set[str], b: set[str]) -> bool:
        if same_kind(a, b):
            return True
        self.dropped["unit_changed"] += 1
        return False


@dataclass(frozen=True, slots=True)
class ExpressionEdit:
    """One way to corrupt an equation's expression.

    `tokens` is the edited expression (for recomputation); `replacements` are the
    (start, end, text) rewrites in the line that produce it; `description` says what changed.
    """

    error_type: str
    tokens: tuple[Token, ...]
    replacements: tuple[Replacement, ...]
    description: str


def _with_text(tokens: tuple[Token, ...], index: int, text: str) -> tuple[Token, ...]:
    return (*tokens[:index], replace(tokens[index], text=text), *tokens[index + 1 :])


def _token_edit(error_type: str, equation: Equation, index: int, text: str) -> ExpressionEdit:
    """The edit writing `text` in place of token `index` (an operand's number or an operator)."""
    token = equation.tokens[index]
    return ExpressionEdit(
        error_type,
        _with_text(equation.tokens, index, text),
        ((token.start, token.end, text),),
        f"{token.text} -> {text}",
    )


def _fraction_parts(equation: Equation) -> set[int]:
    """Token indices inside a written fraction ("3/4"): one number to a reader, so its parts
    are not terms to delete or swap, its bar is no operator to swap, and a substitute does
    not go into it ("1/2640" is no slip)."""
    return {i + k for i in fraction_groups(equation.tokens) for k in range(3)}


def _shown(token: Token) -> Fraction:
    """The number as displayed, before % scaling ("25%" -> 25)."""
    return parse_number(token.text.rstrip("%"))


def _nearby_values(shown: Fraction, places: int) -> list[Fraction]:
    """Plausible slips for a written number: off by one unit, doubled, halved, digits swapped."""
    unit = Fraction(1, 10**places)
    values = [shown + k * unit for k in (1, -1, 2, -2, 10, -10)] + [shown * 2, shown / 2]
    if places == 0 and shown >= 10:
        values.append(Fraction(int(str(int(shown))[::-1])))
    keep = []
    for value in values:
        exact = (value * 10**places).denominator == 1
        if exact and value != shown and (value > 0 or shown <= 0) and value not in keep:
            keep.append(value)
    return keep


def change_number(equation: Equation, ctx: EditContext) -> list[ExpressionEdit]:
    """Replace one operand with a nearby number (a misread or mistyped value)."""
    edits = []
    for i in equation.operand_indices:
        token = equation.tokens[i]
        scale = Fraction(1, 100) if token.text.endswith("%") else Fraction(1)
        for shown in _nearby_values(_shown(token), decimals(token.text)):
            if not ctx.plausible(token.value, shown * scale):
                continue
            text = ctx.write(shown * scale, token.text)
            if text is None or text == token.text:
                continue
            edits.append(_token_edit("change_number", equation, i, text))
    return edits


def wrong_substitution(equation: Equation, ctx: EditContext) -> list[ExpressionEdit]:
    """Substitute another value of the problem (a given or an earlier result) for an operand,
    one written with the same unit."""
    values = list(dict.fromkeys(ctx.values))
    edits = []
    inside = _fraction_parts(equation)
    for i in equation.operand_indices:
        token = equation.tokens[i]
        if i in inside:
            continue
        if token.text.endswith("%"):
            continue  # putting a count where a percentage stood reads as nonsense, not a slip
        unit = ctx.unit_of(equation, i)
        for value in values:
            if value == token.value:
                continue
            if not ctx.compatible(unit, ctx.units.of(value)):
                continue
            if not ctx.plausible(token.value, value):
                continue
            text = ctx.write(value, token.text)
            if text is None:
                continue
            edits.append(_token_edit("wrong_substitution", equation, i, text))
    return edits


def operator_swap(equation: Equation, ctx: EditContext) -> list[ExpressionEdit]:
    """Swap one operator for another of + - * /, in the notation the step uses."""
    edits = []
    inside = _fraction_parts(equation)
    for i in equation.operator_indices:
        token = equation.tokens[i]
        if i in inside:
            continue
        for text in _OPERATOR_SWAPS[token.text]:
            edits.append(_token_edit("operator_swap", equation, i, text))
    return edits


def _term_end(tokens: tuple[Token, ...], i: int) -> int:
    """Index of the last token of the term starting at operand `i` (its unit, if it has one)."""
    return i + 1 if i + 1 < len(tokens) and tokens[i + 1].kind == "unit" else i


_ADDITIVE = frozenset("+-−–")


def delete_term(equation: Equation, ctx: EditContext) -> list[ExpressionEdit]:
    """Drop one term (number and unit) together with its operator; needs three or more terms.

    A term with a unit is only left out of a sum or difference: leaving out a factor that has
    a unit would change the unit of the result."""
    tokens = equation.tokens
    if len(equation.operand_indices) < 3:
        return []
    edits = []
    inside = _fraction_parts(equation)
    for i in equation.operand_indices:
        if i in inside:
            continue
        last = _term_end(tokens, i)
        if i >= 2 and tokens[i - 1].kind == "op" and tokens[i - 2].kind != "lparen":
            # Remove " op term": from the end of the previous token to the end of this term.
            span = (tokens[i - 2].end, tokens[last].end)
            kept = (*tokens[: i - 1], *tokens[last + 1 :])
            joined = {tokens[i - 1].text}
        elif (
            last + 2 < len(tokens)
            and tokens[last + 1].kind == "op"
            and tokens[last + 2].kind in ("operand", "lparen")
        ):
            span = (tokens[i].start, tokens[last + 2].start)
            kept = (*tokens[:i], *tokens[last + 2 :])
            joined = {tokens[last + 1].text}
        else:
            continue
        if not joined <= _ADDITIVE and ctx.unit_of(equation, i):
            ctx.dropped["unit_changed"] += 1
            continue
        edits.append(
            ExpressionEdit("delete_term", kept, ((*span, ""),), f"deleted {tokens[i].text}")
        )
    return edits


def _term_text(tokens: tuple[Token, ...], i: int) -> str:
    last = _term_end(tokens, i)
    return tokens[i].text if last == i else f"{tokens[i].text} {tokens[last].text}"


def swap_terms(equation: Equation, ctx: EditContext) -> list[ExpressionEdit]:
    """Exchange two terms of the same unit (matters for - and /, and across operators); terms
    of different units would swap what the result measures."""
    tokens = equation.tokens
    inside = _fraction_parts(equation)
    indices = [i for i in equation.operand_indices if i not in inside]
    edits = []
    for a_pos, a in enumerate(indices):
        for b in indices[a_pos + 1 :]:
            a_text, b_text = _term_text(tokens, a), _term_text(tokens, b)
            if tokens[a].text == tokens[b].text:
                continue
            if not ctx.compatible(ctx.unit_of(equation, a), ctx.unit_of(equation, b)):
                continue
            swapped = _with_text(_with_text(tokens, a, tokens[b].text), b, tokens[a].text)
            edits.append(
                ExpressionEdit(
                    "swap_terms",
                    swapped,
                    (
                        (tokens[a].start, tokens[_term_end(tokens, a)].end, b_text),
                        (tokens[b].start, tokens[_term_end(tokens, b)].end, a_text),
                    ),
                    f"swapped {a_text} and {b_text}",
                )
            )
    return edits


EditMaker = Callable[[Equation, EditContext], list[ExpressionEdit]]

ERROR_TYPES: dict[str, EditMaker] = {
    "change_number": change_number,
    "wrong_substitution": wrong_substitution,
    "operator_swap": operator_swap,
    "delete_term": delete_term,
    "swap_terms": swap_terms,
}
