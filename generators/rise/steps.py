"""Arithmetic inside solution steps: find `expr = value` equations in a line, recompute exactly.

A step is one line of a solution. The equations in it are what RISE edits and what proves an
edit wrong, so they are parsed into tokens with character spans (to rewrite text in place)
and evaluated exactly by the shared evaluator (`generators.common.arithmetic`, never `eval`):
only numbers, + - * / and parentheses are accepted, anything else is a parse error.

Recognised forms: `80 * 25 / 100 = 20`, `0.2 x 50 = $10`, `(3 + 4) × 2 = 14`, `1,200 ÷ 4 = 300`,
`25% * 80 = 20` (a percent operand or result means value / 100). GSM8K calculator
annotations (`48/2 = <<48/2=24>>24`) are removed first
(`generators.common.annotations.remove_calculator_annotations`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Literal

from mathsynth.generators.common.arithmetic import ExpressionError, evaluate, parse_expression
from mathsynth.numbers import parse_number

NUMBER = r"(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
_OPERAND = rf"\$?{NUMBER}%?"
# "x" is multiplication only when it is not part of a word ("0.2 x 50", "3x4", not "box 5").
_OPERATOR = r"(?:[-+*/÷×−–]|(?<![A-Za-z])x(?![A-Za-z]))"
# A unit after a number, as GSM8K writes "14 pieces/house * 60 houses = 840 pieces".
_WORD = r"(?!x\b)[A-Za-z][A-Za-z']*(?:/[A-Za-z]+)?"
_UNIT = rf"(?:\s+{_WORD}){{1,6}}"
_ATOM = rf"(?:\(\s*)*{_OPERAND}(?:{_UNIT})?(?:\s*\))*"
_EQUATION = re.compile(
    rf"(?<![\w.$])(?P<expr>{_ATOM}(?:\s*{_OPERATOR}\s*{_ATOM})+)\s*=\s*"
    rf"(?P<result>-?\$?{NUMBER}(?:/\d+)?%?)"
)
_TOKEN = re.compile(
    rf"(?P<operand>{_OPERAND})|(?P<op>{_OPERATOR})|(?P<lparen>\()|(?P<rparen>\))"
    rf"|(?P<unit>{_WORD})|(?P<space>\s+)"
)
# A fraction written in prose ("The answer is 7/2.") is one number.
_FRACTION = r"(?:/\d+(?![\d.,]\d))?"
_STANDALONE_NUMBER = re.compile(rf"(?<![\w.]){_OPERAND}{_FRACTION}")
_ANSWER = re.compile(
    rf"(?:\b[Tt]he (?:final )?answer is|####)\s*:?\s*(?P<answer>-?\$?{NUMBER}{_FRACTION}%?)"
)

PYTHON_OPERATOR = {
    "+": "+",
    "-": "-",
    "−": "-",
    "–": "-",
    "*": "*",
    "x": "*",
    "×": "*",
    "/": "/",
    "÷": "/",
}

TokenKind = Literal["operand", "unit", "op", "lparen", "rparen"]


@dataclass(frozen=True, slots=True)
class Token:
    """One piece of an expression, with its span in the line it was read from."""

    kind: TokenKind
    text: str
    start: int
    end: int

    @property
    def value(self) -> Fraction:
        """Numeric value of an operand token ($ and thousands commas dropped, % = / 100)."""
        return parse_number(self.text)


def decimals(text: str) -> int:
    """How many decimal places a written number shows ("12.50" -> 2, "$3" -> 0)."""
    body = text.rstrip("%")
    return len(body.split(".", 1)[1]) if "." in body else 0


def evaluate_tokens(tokens: Sequence[Token]) -> Fraction:
    """Exact value of an expression given as tokens (units are skipped).

    Raises ExpressionError if the tokens do not form an expression of numbers, + - * /
    and parentheses, and ZeroDivisionError on division by zero.
    """
    names: dict[str, Fraction] = {}
    parts: list[str] = []
    for i, token in enumerate(tokens):
        if token.kind == "operand":
            names[f"v{i}"] = token.value
            parts.append(f"v{i}")
        elif token.kind == "op":
            parts.append(PYTHON_OPERATOR[token.text])
        elif token.kind != "unit":
            parts.append(token.text)
    return evaluate(parse_expression(" ".join(parts), names=True), names)


def evaluate_text(expression: str) -> Fraction:
    """Exact value of an expression written as text ("48/2", "0.2 x 50", "(3+4)*2")."""
    return evaluate_tokens(tokenize(expression, 0))


def tokenize(text: str, offset: int) -> list[Token]:
    """Tokens of an expression; spans are shifted by `offset` (the expression's start in its line).

    Raises ExpressionError on any character that is not a number, operator or parenthesis.
    """
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise ExpressionError(f"unexpected {text[pos]!r} in {text!r}")
        kind = match.lastgroup
        start, end = offset + match.start(), offset + match.end()
        if kind == "unit" and tokens and tokens[-1].kind == "unit":
            # Several words form one unit ("tubes of lip gloss"): one token spanning them all.
            first = tokens.pop()
            tokens.append(Token("unit", text[first.start - offset : match.end()], first.start, end))
        elif kind != "space":
            tokens.append(Token(kind, match.group(), start, end))  # type: ignore[arg-type]
        pos = match.end()
    return tokens


def _balance(tokens: list[Token]) -> list[Token]:
    """Drop parentheses the equation regex swallowed from the surrounding prose.

    "(so 4 + 5 = 9)" must yield `4 + 5`, not `4 + 5)`; a regex cannot count, so trim here.
    """
    depth = sum(1 if t.kind == "lparen" else -1 if t.kind == "rparen" else 0 for t in tokens)
    while depth > 0 and tokens and tokens[0].kind == "lparen":
        tokens = tokens[1:]
        depth -= 1
    while depth < 0 and tokens and tokens[-1].kind == "rparen":
        tokens = tokens[:-1]
        depth += 1
    return tokens


@dataclass(frozen=True, slots=True)
class Equation:
    """`expression = result` found in a line; `result` is an operand token (the written value)."""

    tokens: tuple[Token, ...]
    result: Token

    @property
    def start(self) -> int:
        return self.tokens[0].start

    @property
    def end(self) -> int:
        return self.result.end

    @property
    def operand_indices(self) -> list[int]:
        return [i for i, t in enumerate(self.tokens) if t.kind == "operand"]

    @property
    def operator_indices(self) -> list[int]:
        return [i for i, t in enumerate(self.tokens) if t.kind == "op"]

    @property
    def written(self) -> Fraction:
        return self.result.value

    def computed(self) -> Fraction:
        """The expression's exact value. Raises ZeroDivisionError for a division by zero."""
        return evaluate_tokens(self.tokens)

    @property
    def is_exact(self) -> bool:
        """True when the written result equals the expression's exact value."""
        try:
            return self.computed() == self.written
        except ZeroDivisionError:
            return False

    @property
    def is_correct(self) -> bool:
        """Exact, or the written result is the value rounded to the decimals it shows."""
        if self.is_exact:
            return True
        places = decimals(self.result.text)
        try:
            return places > 0 and round_half_up(self.computed(), places) == self.written
        except ZeroDivisionError:
            return False

    def with_tokens(self, tokens: Sequence[Token]) -> Equation:
        return replace(self, tokens=tuple(tokens))


def round_half_up(value: Fraction, places: int) -> Fraction:
    """`value` rounded to `places` decimals, halves away from zero (how people round)."""
    scale = 10**places
    scaled = abs(value) * scale
    rounded = Fraction(int(scaled + Fraction(1, 2)), scale)
    return rounded if value >= 0 else -rounded


def find_equations(line: str) -> list[Equation]:
    """Equations in a line, left to right, including each link of a chain `a + b = c + d = e`.

    Text that looks like an equation but does not evaluate (stray parentheses) is skipped.
    """
    equations: list[Equation] = []
    pos = 0
    while (match := _EQUATION.search(line, pos)) is not None:
        # Restart at the result so that in `a + b = c + d = e` the second link is found too.
        pos = match.start("result")
        tokens = _balance(tokenize(match.group("expr"), match.start("expr")))
        if not any(t.kind == "op" for t in tokens):
            continue
        result = Token("operand", match.group("result"), match.start("result"), match.end())
        equation = Equation(tuple(tokens), result)
        try:
            equation.computed()
        except (ExpressionError, ZeroDivisionError):
            continue
        equations.append(equation)
    return equations


def find_numbers(line: str) -> list[Token]:
    """Every number written in a line, as operand tokens."""
    return [
        Token("operand", m.group(), m.start(), m.end()) for m in _STANDALONE_NUMBER.finditer(line)
    ]


def find_answer(line: str) -> Token | None:
    """The number of a final-answer line ("The answer is 72." or "#### 72"), if it is one."""
    match = _ANSWER.search(line)
    if match is None:
        return None
    return Token("operand", match.group("answer"), match.start("answer"), match.end("answer"))


def fraction_groups(tokens: Sequence[Token]) -> list[int]:
    """Indices i where tokens i..i+2 are a fraction written without spaces ("7/2" in
    "5 - 7/2"): how a solution writes a fractional result it uses later. Part of a longer
    run of "/" ("6/2/3") is not a fraction."""
    found = []
    for i in range(len(tokens) - 2):
        a, op, b = tokens[i], tokens[i + 1], tokens[i + 2]
        if not (a.kind == "operand" == b.kind and op.kind == "op" and op.text == "/"):
            continue
        if a.end != op.start or op.end != b.start or not _is_whole_number(a, b):
            continue
        before = tokens[i - 1] if i > 0 else None
        after = tokens[i + 3] if i + 3 < len(tokens) else None
        if (before is not None and before.text == "/") or (after is not None and after.text == "/"):
            continue
        found.append(i)
    return found


def _is_whole_number(*tokens: Token) -> bool:
    return all(t.text.isdigit() for t in tokens)
