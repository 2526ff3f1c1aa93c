"""Offline InfinityMATH decoupling: a GSM8K-style seed becomes a templated SeedSpec.

Every calculator annotation `<<expr=value>>` becomes one program step. A literal in a step is
resolved, in this order of trust, to
  * a reference to an earlier step, when it equals that step's result;
  * a variable, when it equals a number mentioned in the question ("48", "$3.50", "20%" as 20
    or 0.2, "half" as 2 or 0.5, "twice", "three", "a dozen");
  * a constant, when it is a conversion factor (60 minutes, 12 months, 100 for percent, ...).
Anything else means the writer computed something in their head, and the seed is reported as
not decoupled rather than guessed at.

Correctness rule for templates: when a value becomes a variable, *every* mention of that value
in the question is replaced by the same slot. Which occurrence a step "meant" then no longer
matters: the variant's text and its program agree by construction. When a literal could be
two different things (a question number and an earlier result, or two different mentions, or a
question number that is also a unit factor the text implies) the seed is rejected with
reason `ambiguous_number` instead.

`decouple` is pure; `generators.infinitymath.decouple_check.decouple_many` adds the sandbox
round trip.
"""

from __future__ import annotations

import keyword
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from mathsynth.generators.common.annotations import (
    ANNOTATION_RE,
    FINAL_ANSWER_RE,
    AnnotationError,
    annotate_plain_equations,
    parse_annotation,
)
from mathsynth.generators.common.arithmetic import (
    BinOp,
    Expr,
    Name,
    Neg,
    Num,
    evaluate,
    operators,
    render,
)
from mathsynth.generators.infinitymath.mentions import Mention, find_mentions
from mathsynth.numbers import AnswerType, format_number, has_places, is_whole, parse_number
from mathsynth.seeds import Seed, SeedSpec, VariableSpec

# Numbers a solution may use without the question stating them: 1, and 2 for implicit pairs
# ("both", "round trip"). Unit factors (60, 12, 7, ...) count only where the question names the
# unit (`_UNIT_WORDS`); any other number must come from the question or an earlier step.
CONSTANTS: frozenset[Fraction] = frozenset([Fraction(1), Fraction(2)])

# A question number equal to one of these factors, in a text that also mentions the unit, could
# be either the number or the factor ("60 pages in 90 minutes": which 60 does 90/60 use?).
_UNIT_WORDS: dict[Fraction, re.Pattern[str]] = {
    Fraction(v): re.compile(rf"\b(?:{words})", re.IGNORECASE)
    for v, words in {
        7: "week|day",
        12: "month|year|dozen|inch|foot|feet",
        24: "hour|day",
        30: "month|day",
        52: "week|year",
        60: "minute|hour|second",
        100: "percent|%|cent|meter",
        Fraction(1, 100): "percent|%|cent",
        365: "year|day",
        1000: "gram|liter|litre|meter|kilo|ml",
        3600: "second|hour",
    }.items()
}

# Coin values are constants only where the question talks about that coin.
_COINS: dict[Fraction, re.Pattern[str]] = {
    Fraction(1, 4): re.compile(r"\bquarters\b", re.IGNORECASE),
    Fraction(1, 10): re.compile(r"\bdimes?\b", re.IGNORECASE),
    Fraction(1, 20): re.compile(r"\bnickels?\b", re.IGNORECASE),
}

_STOPWORDS = frozenset(
    {"a", "an", "and", "as", "at", "be", "by", "each", "every", "for", "from", "he", "her"}
    | {"him", "his", "in", "is", "it", "its", "less", "more", "of", "on", "or", "per", "she"}
    | {"than", "that", "the", "their", "them", "these", "they", "this", "to", "was", "were"}
    | {"what", "when", "which", "with"}
)

_OPERATOR_SKILLS = {
    "+": "addition",
    "-": "subtraction",
    "*": "multiplication",
    "/": "division",
}


@dataclass(frozen=True, slots=True)
class DecoupleFailure:
    """Why a seed could not be decoupled: a groupable `reason` code and a human `detail`.

    Reasons: missing_final_answer, bad_gold_answer, no_annotations, bad_annotation,
    annotation_mismatch, ambiguous_number, unexplained_number, answer_not_computed,
    no_variables,
    and (from the sandbox round trip) round_trip_error, round_trip_mismatch,
    unsatisfiable_constraints.
    """

    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class Step:
    """One program line: `name = expr`, with its value on the original numbers."""

    name: str
    expr: Expr
    value: Fraction


@dataclass(slots=True)
class Decoupling:
    """A decoupled seed: the public SeedSpec plus the exact step structure behind it.

    The step structure lets `decouple_many` evaluate draws exactly, in-process, before it asks
    the sandbox to confirm them.
    """

    spec: SeedSpec
    steps: list[Step]
    originals: dict[str, Fraction]


class _Reject(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.failure = DecoupleFailure(reason, detail)


@dataclass(frozen=True, slots=True)
class _Pending:
    step: str
    value: Fraction
    detail: str
    num: Num
    source: str
    mention: Mention | None  # the one question mention it could be, None if several
    consumer: int  # index of the step whose expression holds it


@dataclass(slots=True)
class _Variable:
    name: str
    value: Fraction
    mentions: list[Mention] = field(default_factory=list)


def decouple(seed: Seed) -> SeedSpec | DecoupleFailure:
    """Template + program + variable specs for a GSM8K-style seed, or why not."""
    result = analyse(seed)
    return result if isinstance(result, DecoupleFailure) else result.spec


def analyse(seed: Seed) -> Decoupling | DecoupleFailure:
    """Like `decouple`, keeping the step structure (see `Decoupling`)."""
    try:
        return _Decoupler(seed).run()
    except _Reject as exc:
        return exc.failure


class _Decoupler:
    def __init__(self, seed: Seed) -> None:
        self.seed = seed
        self.mentions = find_mentions(seed.question)
        self.variables: dict[Fraction, _Variable] = {}
        self.steps: list[Step] = []
        self.names: set[str] = set()
        self.pending: dict[str, _Pending] = {}

    # -- resolution -------------------------------------------------------------------------

    def run(self) -> Decoupling:
        gold = self._gold()
        body = FINAL_ANSWER_RE.split(annotate_plain_equations(self.seed.solution), maxsplit=1)[0]
        lines = body.rstrip().split("\n")
        line_steps: list[list[int]] = []
        for line in lines:
            indices = []
            for m in ANNOTATION_RE.finditer(line):
                try:
                    ann = parse_annotation(m["body"])
                except AnnotationError as exc:
                    raise _Reject("bad_annotation", str(exc)) from None
                indices.append(self._add_step(ann.expr, ann.claimed, ann.source))
            line_steps.append(indices)
        if not self.steps:
            raise _Reject("no_annotations", "the solution has no <<expr=value>> annotations")
        answer_index = self._answer_step(gold)
        self._settle_pending(answer_index)
        last_line = max(i for i, idx in enumerate(line_steps) if answer_index in idx)
        steps = self.steps[: answer_index + 1]
        used = {n.name for s in steps for n in _names(s.expr)}
        variables = [v for v in self.variables.values() if v.name in used]
        if not variables:
            raise _Reject("no_variables", "no question number is used by the calculation")
        solution = self._solution_template(lines[: last_line + 1], line_steps, answer_index)
        spec = SeedSpec(
            id=self.seed.id,
            topics=["word problem"],
            knowledge_points=self._skills(steps, variables),
            difficulty=min(5, 1 + (len(steps) - 1) // 2),
            question=self._question_template(variables),
            solution=solution,
            program=_program(variables, steps),
            variables={v.name: _variable_spec(v) for v in variables},
            constraints=_constraints(variables, steps),
            whole=[s.name for s in steps if is_whole(s.value)],
            answer_type=_answer_type(gold),
            answer=format_number(gold),
        )
        return Decoupling(spec, steps, {v.name: v.value for v in variables})

    def _gold(self) -> Fraction:
        text = self.seed.answer.strip().replace(",", "").lstrip("$").rstrip(".")
        if not text:
            raise _Reject("missing_final_answer", "the seed has no final answer")
        try:
            return parse_number(text)
        except (ValueError, ZeroDivisionError):
            raise _Reject("bad_gold_answer", f"final answer {text!r} is not a number") from None

    def _add_step(self, expr: Expr, claimed: Fraction, source: str) -> int:
        resolved = self._resolve(expr, source)
        env = {s.name: s.value for s in self.steps}
        env.update({key: p.value for key, p in self.pending.items()})
        env.update({v.name: v.value for v in self.variables.values()})
        value = evaluate(resolved, env)
        if value != claimed:
            raise _Reject(
                "annotation_mismatch",
                f"<<{source}>> evaluates to {format_number(value)}, not {format_number(claimed)}",
            )
        name = f"step{len(self.steps) + 1}"
        self.steps.append(Step(name, resolved, value))
        return len(self.steps) - 1

    def _resolve(self, expr: Expr, source: str) -> Expr:
        if isinstance(expr, Num):
            return self._resolve_literal(expr, source)
        if isinstance(expr, Neg):
            return Neg(self._resolve(expr.operand, source))
        if isinstance(expr, BinOp):
            return BinOp(
                expr.op, self._resolve(expr.left, source), self._resolve(expr.right, source)
            )
        return expr

    def _resolve_literal(self, num: Num, source: str) -> Expr:
        value = num.value
        if value == 0:
            return num
        earlier = [s for s in self.steps if s.value == value]
        candidates: dict[Fraction, Mention] = {}
        for m in self.mentions:
            if m.matches(value):
                candidates.setdefault(m.value, m)  # the first mention names the variable
        if earlier and candidates:
            # Settled once all steps are known (see `_settle_pending`).
            key = f"pending{len(self.pending) + 1}"
            detail = f"{num.text} in <<{source}>> is both a question number and {earlier[-1].name}"
            mention = next(iter(candidates.values())) if len(candidates) == 1 else None
            self.pending[key] = _Pending(
                earlier[-1].name, value, detail, num, source, mention, len(self.steps)
            )
            return Name(key)
        if earlier:
            # Latest result with this value: GSM8K steps build on the line just before.
            return Name(earlier[-1].name)
        if len(candidates) > 1:
            texts = ", ".join(repr(m.text) for m in candidates.values())
            raise _Reject("ambiguous_number", f"{num.text} in <<{source}>> could come from {texts}")
        if candidates:
            (mention,) = candidates.values()
            return self._from_question(mention, num, source)
        if value in CONSTANTS or self._implied_unit(value):
            return num
        coin = _COINS.get(value)
        if coin is not None and coin.search(self.seed.question):
            return num
        raise _Reject(
            "unexplained_number",
            f"{num.text} in <<{source}>> is neither in the question nor an earlier result",
        )

    def _from_question(self, mention: Mention, num: Num, source: str) -> Expr:
        """The program leaf for a literal that comes from `mention` in the question."""
        value = num.value
        if self._frozen(mention.value):
            return num
        if self._maybe_unit_factor(value):
            raise _Reject(
                "ambiguous_number",
                f"{num.text} in <<{source}>> is a question number and also a unit factor",
            )
        var = self._variable(mention)
        relation = mention.matches(value)
        if relation == "percent":
            return BinOp("/", Name(var.name), Num(Fraction(100), "100"))
        if relation == "reciprocal":
            return BinOp("/", Num(Fraction(1), "1"), Name(var.name))
        return Name(var.name)

    def _implied_unit(self, value: Fraction) -> bool:
        """True when `value` is a conversion factor for a unit the question talks about.

        Without the unit in the text, a 7 or a 12 is more likely the writer's own arithmetic
        (1 + 2 + 4 ships), which must not be frozen into a program whose inputs change.
        """
        unit = _UNIT_WORDS.get(value)
        return unit is not None and unit.search(self.seed.question) is not None

    def _frozen(self, value: Fraction) -> bool:
        """True for "half" and "50%": solutions lean on x - x/2 == x/2 ("sells half, keeps
        48/2"), which no other value satisfies, so these stay fixed in text and program alike
        (the value gets no variable, hence every mention of it keeps its original text)."""
        return any(
            (m.kind == "part" and m.value == 2) or (m.kind == "percent" and m.value == 50)
            for m in self.mentions
            if m.value == value
        )

    def _maybe_unit_factor(self, value: Fraction) -> bool:
        """True when `value` could be an implied conversion factor rather than the stated number.

        "60 pages in 90 minutes" is ambiguous for 90/60; "a 60-minute class" is not: every
        mention of 60 there carries the unit itself, so the factor is the stated number.
        """
        unit = _UNIT_WORDS.get(value)
        if unit is None or not unit.search(self.seed.question):
            return False
        question = self.seed.question
        return not all(
            unit.search(m.text)  # "a dozen" names its unit itself
            or unit.match(question, m.end + len(re.match(r"[\s-]*", question[m.end :])[0]))
            for m in self.mentions
            if m.value == value
        )

    def _variable(self, mention: Mention) -> _Variable:
        var = self.variables.get(mention.value)
        if var is None:
            name = self._fresh_name(_name_hint(self.seed.question, mention))
            tied = [m for m in self.mentions if m.value == mention.value]
            var = self.variables[mention.value] = _Variable(name, mention.value, tied)
        return var

    def _fresh_name(self, hint: str) -> str:
        # "step..." names are the program's locals; keywords cannot be parameters.
        if hint.startswith("step") or keyword.iskeyword(hint) or hint == "solution":
            hint = f"n_{hint}"
        name, n = hint, 2
        while name in self.names:
            name, n = f"{hint}_{n}", n + 1
        self.names.add(name)
        return name

    def _settle_pending(self, answer_index: int) -> None:
        """Decide literals that equal both a question number and an earlier result.

        Every result a writer computes is there to be used. So when the earlier step's result
        is used nowhere else, is not the answer, and only this literal could be using it, the
        literal is that result. Otherwise the seed is rejected: guessing could tie a variant's
        text to the wrong number.
        """
        if not self.pending:
            return
        consumers = Counter(n.name for s in self.steps for n in _names(s.expr))
        claims = Counter(p.step for p in self.pending.values())
        answer = self.steps[answer_index].name
        mapping: dict[str, Expr] = {}
        for key, p in self.pending.items():
            if consumers[p.step] or p.step == answer:
                raise _Reject("ambiguous_number", p.detail)
            if claims[p.step] == 1:
                mapping[key] = Name(p.step)
                continue
            # "200 + 200" after a step giving 200, with 200 also in the question: one literal
            # is the step and the other the question number, and in a pure sum or product it
            # does not matter which is which.
            rivals = [q for q in self.pending.values() if q.step == p.step]
            same_step = {q.consumer for q in rivals} == {p.consumer}
            ops = operators(self.steps[p.consumer].expr)
            commutative = ops in ({"+"}, {"*"}) and not _has_neg(self.steps[p.consumer].expr)
            if not (same_step and commutative and p.mention is not None):
                raise _Reject("ambiguous_number", p.detail)
            first = rivals[0] is p
            mapping[key] = (
                Name(p.step) if first else self._from_question(p.mention, p.num, p.source)
            )
        self.steps = [Step(s.name, _substitute(s.expr, mapping), s.value) for s in self.steps]

    def _answer_step(self, gold: Fraction) -> int:
        for index in range(len(self.steps) - 1, -1, -1):
            if self.steps[index].value == gold:
                return index
        raise _Reject(
            "answer_not_computed",
            f"no step computes the final answer {format_number(gold)}"
            f" (last step gives {format_number(self.steps[-1].value)})",
        )

    # -- text ---------------------------------------------------------------------------------

    def _question_template(self, variables: list[_Variable]) -> str:
        slots = {m.start: (m, v.name) for v in variables for m in v.mentions}
        return _rewrite(self.seed.question, self.mentions, lambda m: _slot_of(slots, m))

    def _solution_template(
        self, lines: list[str], line_steps: list[list[int]], answer_index: int
    ) -> str:
        by_value = {v.value: v for v in self.variables.values()}
        allowed = {v for v in _UNIT_WORDS if self._implied_unit(v)} | set(CONSTANTS)
        out = []
        defined = 0
        for line, indices in zip(lines, line_steps, strict=False):
            indices = [i for i in indices if i <= answer_index]
            defined = max([defined, *(i + 1 for i in indices)])
            # Prose may restate results computed so far, never later ones.
            known = self.steps[:defined]
            rewritten = _rewrite_line(
                line, indices, self.steps, by_value, known, self.mentions, allowed
            )
            if rewritten is not None:
                out.append(rewritten)
            elif indices:
                out.append("\n".join(_equation(self.steps[i]) for i in indices))
        return "\n".join(line for line in out if line.strip())

    def _skills(self, steps: list[Step], variables: list[_Variable]) -> list[str]:
        ops = set().union(*(operators(s.expr) for s in steps))
        skills = [skill for op, skill in _OPERATOR_SKILLS.items() if op in ops]
        kinds = {m.kind for v in variables for m in v.mentions}
        if "percent" in kinds:
            skills.append("percentages")
        if "part" in kinds:
            skills.append("fractions")
        return skills[:5] or ["arithmetic"]


def _has_neg(expr: Expr) -> bool:
    if isinstance(expr, Neg):
        return True
    if isinstance(expr, BinOp):
        return _has_neg(expr.left) or _has_neg(expr.right)
    return False


def _substitute(expr: Expr, mapping: dict[str, Expr]) -> Expr:
    if isinstance(expr, Name):
        return mapping.get(expr.name, expr)
    if isinstance(expr, Neg):
        return Neg(_substitute(expr.operand, mapping))
    if isinstance(expr, BinOp):
        return BinOp(expr.op, _substitute(expr.left, mapping), _substitute(expr.right, mapping))
    return expr


def _names(expr: Expr) -> list[Name]:
    if isinstance(expr, Name):
        return [expr]
    if isinstance(expr, Neg):
        return _names(expr.operand)
    if isinstance(expr, BinOp):
        return [*_names(expr.left), *_names(expr.right)]
    return []


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def _slot_of(slots: dict[int, tuple[Mention, str]], mention: Mention) -> str | None:
    entry = slots.get(mention.start)
    return entry[0].slot(entry[1]) if entry else None


def _rewrite(text: str, mentions: list[Mention], slot: Any) -> str:
    """Escape `text` as a template, replacing mentions for which `slot(m)` gives a slot."""
    parts, pos = [], 0
    for m in mentions:
        replacement = slot(m)
        if replacement is None:
            continue
        parts.append(_escape(text[pos : m.start]))
        parts.append(replacement)
        pos = m.end
    parts.append(_escape(text[pos:]))
    return "".join(parts)


# A written-out calculation before an annotation: "48/2 = " or "0.2 x 50 = $".
_LEAD_RE = re.compile(r"[\d$.,()+\-*/x×÷\s]*=\s*\$?\s*$")
_ECHO_RE = re.compile(r"\s*-?[\d.,]*\d")


def _equation(step: Step) -> str:
    return f"{_text_expr(step.expr)} = {{{step.name}}}"


def _text_expr(expr: Expr) -> str:
    def leaf(node: Num | Name) -> str:
        return f"{{{node.name}}}" if isinstance(node, Name) else format_number(node.value)

    return render(expr, leaf)


def _rewrite_line(
    line: str,
    indices: list[int],
    steps: list[Step],
    variables: dict[Fraction, _Variable],
    known: list[Step],
    question_mentions: list[Mention],
    allowed: set[Fraction],
) -> str | None:
    """The line with each annotated calculation rewritten as "expr = {stepN}" and every other
    number in its prose tied to a slot; None when some prose number cannot be tied safely."""
    segments: list[str] = []
    pos = 0
    matches = list(ANNOTATION_RE.finditer(line))
    for m, index in zip(matches, indices, strict=False):
        prefix = line[pos : m.start()]
        dollar = ""
        lead = _LEAD_RE.search(prefix)
        if lead and re.search(r"\d", lead.group(0)):
            cut = lead.start() + (len(lead.group(0)) - len(lead.group(0).lstrip(" ,")))
        else:
            cut = len(prefix)
        if prefix[cut:].rstrip().endswith("$") or prefix.rstrip().endswith("$"):
            dollar = "$"
            if cut == len(prefix):
                cut = prefix.rstrip().rfind("$")
        prose = _prose(prefix[:cut], variables, known, question_mentions, allowed)
        if prose is None:
            return None
        step = steps[index]
        segments.append(prose)
        segments.append(f"{_text_expr(step.expr)} = {dollar}{{{step.name}}}")
        pos = m.end()
        echo = _ECHO_RE.match(line, pos)
        if echo:
            pos = echo.end()
    if len(matches) > len(indices):
        return None
    tail = _prose(line[pos:], variables, known, question_mentions, allowed)
    if tail is None:
        return None
    segments.append(tail)
    return "".join(segments)


def _prose(
    text: str,
    variables: dict[Fraction, _Variable],
    known: list[Step],
    question_mentions: list[Mention],
    allowed: set[Fraction],
) -> str | None:
    fixed = {m.value for m in question_mentions if m.value not in variables}

    def slot(m: Mention) -> str | None:
        var = variables.get(m.value)
        results = [s for s in known if s.value == m.value]
        if var is not None and not results:
            return m.slot(var.name)
        if results and var is None and m.kind in ("number", "money", "percent", "cardinal"):
            if m.value in fixed:
                raise _Unsafe
            return m.slot(results[-1].name)
        if var is None and not results and (m.value in fixed or m.value in allowed):
            return None
        raise _Unsafe

    try:
        return _rewrite(text, find_mentions(text), slot)
    except _Unsafe:
        return None


class _Unsafe(Exception):
    """A prose number that could mean more than one thing, or nothing known."""


def _program(variables: list[_Variable], steps: list[Step]) -> str:
    def leaf(node: Num | Name) -> str:
        if isinstance(node, Name):
            return node.name
        return format_number(node.value) if is_whole(node.value) else str(float(node.value))

    params = ", ".join(v.name for v in variables)
    body = [f"    {s.name} = {render(s.expr, leaf)}" for s in steps]
    return "\n".join([f"def solution({params}):", *body, f"    return {steps[-1].name}"]) + "\n"


def _name_hint(question: str, mention: Mention) -> str:
    if mention.kind == "multiplier":
        return "times"
    if mention.kind == "part":
        return "parts"
    base = "percent" if mention.kind == "percent" else "n"
    # The hint comes from the same clause: "$100. Betty has" must not name 100 "betty".
    clause = re.split(r"[.,;:!?]\s", question[mention.end : mention.end + 40])[0]
    for word in re.findall(r"[A-Za-z]+", clause)[:3]:
        word = word.lower()
        if len(word) > 2 and word not in _STOPWORDS and word.isidentifier():
            return f"{base}_{word}" if base == "percent" else word
    return base


def _roundness(value: int) -> int:
    for step in (1000, 500, 100, 50, 25, 10, 5, 2):
        if value % step == 0 and value >= 2 * step:
            return step
    return 1


def _variable_spec(var: _Variable) -> VariableSpec:
    v = var.value
    kinds = {m.kind for m in var.mentions}
    if kinds <= {"multiplier", "part"}:
        choices = sorted({int(v), 2, 3, 4, 5})
        return VariableSpec(type="int", choices=choices, default=int(v))
    if is_whole(v):
        n = int(v)
        step = _roundness(n)
        lo, hi = max(1, math.ceil(n / 2)), max(n * 2, n + 3)
        if "percent" in kinds and n <= 100:
            step = 10 if n % 10 == 0 else 5 if n % 5 == 0 else 1
            lo, hi = max(step, math.ceil(n / 2)), min(100, max(n * 2, n + 3))
        lo, hi = math.ceil(lo / step) * step, hi // step * step
        return VariableSpec(type="int", min=lo, max=hi, multiple_of=step, default=n)
    places = next(p for p in range(1, 7) if has_places(v, p)) if has_places(v, 6) else 6
    lo, hi = round(float(v) / 2, places), round(float(v) * 2, places)
    return VariableSpec(type="decimal", min=lo, max=hi, places=places, default=float(v))


def _constraints(variables: list[_Variable], steps: list[Step]) -> list[str]:
    out = []
    for step in steps:
        if step.value > 0:
            out.append(f"{step.name} > 0")
        elif step.value == 0:
            out.append(f"{step.name} >= 0")
    for var in variables:
        if any(m.kind == "percent" for m in var.mentions) and 0 <= var.value <= 100:
            out.append(f"0 <= {var.name} <= 100")
    return out


def _answer_type(gold: Fraction) -> AnswerType:
    if gold.denominator == 1:
        return "int"
    return "decimal" if has_places(gold, 2) else "fraction"
