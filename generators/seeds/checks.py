"""The rules a bundled seed must follow that can be judged without running it.

`static_problems` is what the library loader enforces on every build (a seed breaking one is
a ConfigError naming the file and seed) and the first thing the seed lint reports. Rules that
need the program to run (defaults reproduce the answer, random draws pass, rendered text has
no "1 hours") are the lint's (`generators.seeds.lint`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction

from mathsynth.generators.common.pools import Pool, check_roles
from mathsynth.generators.common.templates import fields_of, latex_context
from mathsynth.inflection import plural
from mathsynth.quantities import ANSWER_TYPES, ANY_ANSWER_TYPE, LINKABLE_KINDS, within_bounds
from mathsynth.seeds import QuantityFields, SeedSpec

MIN_PHRASINGS = 3
_SENTENCE = re.compile(r"(?<=[.!?])\s+")
# what may not stand right before a linkable slot: an article, a demonstrative or a
# possessive ("of the town's {voters:n}", "{item.plural}' {x:n}"); "all" may ("all the
# students Maya counts")
_DETERMINED = re.compile(
    r"(?:\b(?:the|a|an|this|that|these|those|its|his|her|their|our|my|your|whose|every|each)"
    r"|'s|\}')\s+$",
    re.IGNORECASE,
)
# a/an, capitalised only opening a sentence ("the letter A {a}" is a name, not an article)
_FIXED_ARTICLE = re.compile(r"(?:\ban?|(?:^|[.!?]\s)An?)\s+$")


def sentences(text: str) -> list[str]:
    """Sentences of a text (split after . ! ? followed by space), stripped, non-empty."""
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def static_problems(spec: SeedSpec, pools: Mapping[str, Pool]) -> list[str]:
    """Every rule `spec` breaks that can be seen without running it (empty when none)."""
    problems: list[str] = []
    add = problems.append
    if len(spec.questions) < MIN_PHRASINGS:
        add(f"needs at least {MIN_PHRASINGS} phrasings in `questions`, has {len(spec.questions)}")
    # -- kinds and ranges
    for name, var in spec.variables.items():
        if var.kind is None:
            add(f"variable {name}: no `kind` (count, money, length, ...)")
            continue
        bounds = var.bounds
        if bounds is not None:
            for end in bounds:
                if not within_bounds(var.kind, Fraction(str(end))):
                    add(f"variable {name}: range end {end} is not a possible {var.kind}")
        if var.link and var.kind not in LINKABLE_KINDS:
            add(f"variable {name}: a {var.kind} cannot be linked (linkable: {LINKABLE_KINDS})")
    for name, quantity in spec.quantities.items():
        if quantity.kind is None:
            add(f"quantity {name}: no `kind`")
        if name in spec.variables:
            add(f"quantity {name}: is a variable (declare its kind there)")
    result = spec.result
    if result is None:
        add("answer: write it as {value, type, kind, range, ...} (its kind is missing)")
    else:
        if result.kind is None:
            add("answer: no `kind`")
        else:
            allowed = ANSWER_TYPES.get(result.kind, ANY_ANSWER_TYPE)
            if result.type not in allowed:
                add(f"answer: a {result.kind} answer has type {' or '.join(allowed)}")
            if result.phrase is not None and result.kind not in LINKABLE_KINDS:
                add(f"answer: a {result.kind} answer cannot be linked, so it takes no phrase")
        if result.range is None and result.type != "exact":
            add("answer: no `range` (the values a plausible answer lies in)")
        if result.range is not None and result.type != "exact":
            try:
                value = Fraction(spec.answer)
            except (ValueError, ZeroDivisionError):
                value = None
            if value is not None and not result.range[0] <= value <= result.range[1]:
                add(f"answer: the default answer {spec.answer} is outside range {result.range}")
            for end in result.range:
                if result.kind and not within_bounds(result.kind, Fraction(str(end))):
                    add(f"answer: range end {end} is not a possible {result.kind}")
    # -- pools and template fields
    problems.extend(check_roles(spec.pools, pools))
    roles = {role: pools[p] for role, p in spec.pools.items() if p in pools}
    for k, question in enumerate(spec.questions):
        where = f"questions[{k}]"
        problems.extend(_field_problems(spec, question, where, roles, in_question=True))
        used = {f.name for f in fields_of(question)}
        if spec.pools and not used & set(spec.pools):
            # A phrasing without a pool role reads the same in every variant.
            add(f"{where}: uses none of the pool roles {sorted(spec.pools)}")
        for name in spec.variables:
            if name not in used:
                add(f"{where}: does not mention variable {name}")
        for name, var in spec.variables.items():
            if var.link:
                forms = [f for f in fields_of(question) if f.name == name]
                if len(forms) != 1 or forms[0].spec != "n" or forms[0].word:
                    add(f"{where}: linkable {name} must appear exactly once, as {{{name}:n}}")
                elif re.match(
                    r"\s+(?:of|long|wide|high|tall|deep|apart|away)\b", question[forms[0].end :]
                ):
                    # "{x:n} of flour" or "{x:n} long": another problem's phrase cannot stand there
                    add(f"{where}: linkable {{{name}:n}} is qualified by what follows it")
                elif _DETERMINED.search(question[: forms[0].start]):
                    # "of the {x:n}": a linked phrase brings its own determiner ("the money
                    # Maya earns"), so the composed text would read "of the the money ..."
                    add(
                        f"{where}: linkable {{{name}:n}} follows a determiner or a possessive;"
                        " another problem's phrase brings its own"
                    )
    problems.extend(_field_problems(spec, spec.solution, "solution", roles, in_question=False))
    if result is not None and result.phrase is not None:
        for f in fields_of(result.phrase):
            if f.name not in roles:
                add(f"answer.phrase: {{{f.name}}} is not a pool role")
        if not _opening_phrasings(spec):
            add(
                "answer.phrase: no phrasing can open a composed problem: one must state its"
                " facts first and end with an ask that mentions no variable"
            )
    # -- variety: no sentence shared by two phrasings
    seen: dict[str, int] = {}
    for k, question in enumerate(spec.questions):
        for sentence in sentences(question):
            key = sentence.casefold()
            if key in seen and seen[key] != k:
                add(f"questions[{k}] repeats a sentence of questions[{seen[key]}]: {sentence!r}")
            seen.setdefault(key, k)
    return problems


def _opening_phrasings(spec: SeedSpec) -> list[int]:
    """Phrasings whose last sentence is the ask and mentions no variable (so a composition can
    drop it and keep every fact): what `generators.common.compose.a_phrasings` uses."""
    out = []
    for k, question in enumerate(spec.questions):
        parts = sentences(question)
        if len(parts) < 2 or any("?" in p for p in parts[:-1]):
            continue
        if not any(f.name in spec.variables for f in fields_of(parts[-1])):
            out.append(k)
    return out


def _noun_repeated(quantity: QuantityFields, after: str) -> bool:
    """Whether the two words after a `{x:n}` field repeat the noun or unit it renders."""
    noun = quantity.noun or quantity.unit
    if not noun or noun.startswith("{"):  # a pool role's noun: known only when drawn
        return False
    said = {noun.split()[-1], (quantity.plural or plural(noun)).split()[-1]}
    return any(word.strip(".,;:?!") in said for word in after.split()[:2])


def _field_problems(
    spec: SeedSpec, template: str, where: str, roles: Mapping[str, Pool], *, in_question: bool
) -> list[str]:
    problems = []
    for f in fields_of(template):
        label = template[f.start : f.end]
        if f.name in roles:
            pool = roles[f.name]
            if f.attr is not None and f.attr[:1].lower() + f.attr[1:] not in pool.fields:
                problems.append(
                    f"{where}: {label}: pool {pool.name!r} entries have no {f.attr!r} "
                    f"(they have {', '.join(sorted(pool.fields))})"
                )
            if f.spec or f.word:
                problems.append(f"{where}: {label}: a role takes only .attr")
            continue
        known = f.name in spec.variables or (
            not in_question and (f.name in spec.quantities or f.name == "answer")
        )
        if not known:
            if f.spec == "n" and f.name not in spec.variables:
                problems.append(f"{where}: {label}: declare the kind of {f.name} in `quantities`")
            if in_question and not latex_context(template, f.start):
                problems.append(f"{where}: {label}: a question may use only variables and roles")
            # solution names may be solution() locals: the lint checks them by running it
            continue
        if _FIXED_ARTICLE.search(template[: f.start]):
            # "a {jug}-liter jug" reads "a 8-liter jug" on some draw; the random draws of the
            # lint may never hit one
            problems.append(
                f"{where}: a fixed a/an before {label}: write {{{f.name}|a}} so it agrees with"
                " the number (an 8, a 9)"
            )
        quantity = spec.quantity(f.name)
        if f.spec == "n" and quantity is not None and _noun_repeated(quantity, template[f.end :]):
            # "{coolers:n} full coolers" reads "5 coolers full coolers"
            problems.append(
                f"{where}: {label} already says its noun, and the next words say it again"
            )
        if f.spec == "n" and (quantity is None or quantity.kind is None):
            problems.append(f"{where}: {label}: {{x:n}} needs the kind of {f.name} declared")
        if f.word is not None and f.word not in ("a", "A"):
            word = f.word[1:-1] if f.word.startswith("{") else f.word
            if word in spec.pools and word not in roles:
                problems.append(f"{where}: {label}: unknown role {word!r}")
        if f.attr is not None:
            problems.append(f"{where}: {label}: only pool roles have attributes")
    return problems
