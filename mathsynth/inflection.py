"""English inflection by rule: a noun's number agrees with a value, a/an agrees with the word
or number that follows it.

Templates never hard-code "apples" next to a drawn number: they ask for the noun agreeing with
the value (`{n|apple}` in a template), so a draw of 1 reads "1 apple", never "1 apples".
Plurals follow English rules with a table of irregular nouns (person -> people, child ->
children, foot -> feet, loaf -> loaves), the head of a compound is the word inflected ("slice
of cake" -> "slices of cake", "kilometer per hour" -> "kilometers per hour"), and a pool entry
or a unit may give its own plural, which wins. A few verbs agree the same way
(`{n|is}`: "1 glass is left", "3 glasses are left"). The article before a number follows how the
number is spoken ("an 8", "an 11", "an 18,000", "a 110").

Rules rather than the `inflect` package on the hot path: importing `inflect` costs seconds
(it type-checks itself at import), which a build would pay in every process. The checks that
judge rendered text (`one_plural`, the seed lint's article check) do use `inflect`, an
independent opinion on what the rules wrote.
"""

from __future__ import annotations

import re
from fractions import Fraction
from functools import cache, lru_cache
from typing import Any

_DIGITS = re.compile(r"[\d,]+")


@cache
def _engine() -> Any:
    import inflect

    return inflect.engine()


_IRREGULAR = {
    "person": "people",
    "child": "children",
    "man": "men",
    "woman": "women",
    "foot": "feet",
    "tooth": "teeth",
    "goose": "geese",
    "mouse": "mice",
    "ox": "oxen",
    "loaf": "loaves",
    "leaf": "leaves",
    "knife": "knives",
    "wife": "wives",
    "life": "lives",
    "half": "halves",
    "shelf": "shelves",
    "wolf": "wolves",
    "calf": "calves",
    "thief": "thieves",
    "scarf": "scarves",
    "potato": "potatoes",
    "tomato": "tomatoes",
    "hero": "heroes",
    "echo": "echoes",
    "cactus": "cacti",
    "analysis": "analyses",
    "crisis": "crises",
    "axis": "axes",
    "die": "dice",
    "quiz": "quizzes",
}
_INVARIANT = frozenset(
    [
        "fish",
        "sheep",
        "deer",
        "series",
        "species",
        "aircraft",
        "moose",
        "bison",
        "salmon",
        "trout",
        "offspring",
        "news",
    ]
)
# Verbs a count governs, in the form agreeing with 1 ("1 glass is left", "1 piece goes"):
# `{x|is}` in a template agrees like a noun does.
_VERBS = {
    "is": "are",
    "was": "were",
    "has": "have",
    "does": "do",
    "goes": "go",
    "comes": "come",
    "remains": "remain",
    "stays": "stay",
}
_HEAD_SPLIT = re.compile(r" (?:of|per|in|for|with|on) ")


@lru_cache(maxsize=8192)
def plural(noun: str) -> str:
    """The plural of a singular noun or noun phrase ("box" -> "boxes", "person" -> "people",
    "slice of cake" -> "slices of cake", "kilometer per hour" -> "kilometers per hour",
    "glue stick" -> "glue sticks"). Capitalisation of the inflected word is kept."""
    if not noun:
        return noun
    head = _HEAD_SPLIT.search(noun)
    if head:
        return plural(noun[: head.start()]) + noun[head.start() :]
    *rest, last = noun.split(" ")
    return " ".join([*rest, _plural_word(last)])


def _plural_word(word: str) -> str:
    lower = word.lower()
    if lower in _VERBS:
        return _VERBS[lower]
    if lower in _INVARIANT:
        return word
    if lower in _IRREGULAR:
        out = _IRREGULAR[lower]
        return out[:1].upper() + out[1:] if word[:1].isupper() else out
    if re.search(r"(?:s|x|z|ch|sh)$", lower):
        return word + "es"
    if re.search(r"[^aeiou]y$", lower):
        return word[:-1] + "ies"
    return word + "s"


def is_singular_value(value: Any) -> bool:
    """Whether a count of `value` takes the singular: exactly 1 (1, 1.0, Fraction(1))."""
    if isinstance(value, bool):
        return False
    try:
        return Fraction(value) == 1 if not isinstance(value, float) else value == 1.0
    except (TypeError, ValueError):
        return False


def agree(noun: str, value: Any, plural_form: str | None = None) -> str:
    """`noun` in the number that agrees with `value`: singular for exactly 1 and for a proper
    fraction ("1/2 cup", "3/4 mile"), else plural ("0 apples", "2.5 hours", "0.5 liters")."""
    if is_singular_value(value) or (isinstance(value, Fraction) and 0 < value < 1):
        return noun
    return plural_form or plural(noun)


def article(word: str) -> str:
    """ "a" or "an" for the word or number written after it ("an 8-year-old", "an hour",
    "a unicorn", "an 11", "a 110")."""
    text = word.strip()
    if not text:
        return "a"
    if text[0].isdigit():
        return "an" if _number_starts_with_vowel_sound(text) else "a"
    return _article_for_word(text.split()[0])


def with_article(word: str) -> str:
    """`word` with its indefinite article in front ("an apple", "a pear", "an 8-hour shift")."""
    return f"{article(word)} {word}"


# Vowel letters that sound like consonants ("a unicorn", "a one-way ticket") and a silent h
# ("an hour"). Upper-case words are said letter by letter ("an MP3", "a USB stick").
_CONSONANT_SOUND = re.compile(r"^(?:uni|use|usu|uti|ure|uro|eu|ewe|one\b|once)", re.I)
_SILENT_H = re.compile(r"^(?:hour|honest|honou?r|heir)", re.I)
_LETTER_VOWEL_SOUND = set("AEFHILMNORSX")


@lru_cache(maxsize=8192)
def _article_for_word(word: str) -> str:
    if word.isupper():
        return "an" if word[0] in _LETTER_VOWEL_SOUND else "a"
    if _SILENT_H.match(word):
        return "an"
    if word[:1].lower() in "aeiou" and not _CONSONANT_SOUND.match(word):
        return "an"
    return "a"


def _number_starts_with_vowel_sound(text: str) -> bool:
    """Spoken English: 8..., 11 / 18 (and 11,000 / 18 million: a leading group of eleven or
    eighteen) start with a vowel sound; everything else (one, two, ..., a hundred) does not."""
    match = _DIGITS.match(text)
    digits = (match.group(0) if match else text).replace(",", "")
    if not digits:
        return False
    if digits[0] == "8":
        return True
    # The leading group of thousands is what is said first: "11" in 11,500, "1" in 1,150.
    lead = len(digits) % 3 or 3
    return digits[:lead] in ("11", "18")


def capitalize(text: str) -> str:
    """First letter upper case, the rest untouched ("she" -> "She", "iPad" stays readable)."""
    return text[:1].upper() + text[1:]


_ONE_WORD = re.compile(r"(?<![\d.,/])\b1 ([a-z][a-z-]*)")


def one_plural(text: str) -> list[str]:
    """The "1 <plural noun>" phrases in a text ("1 hours", "1 boxes"; not "1 hour", "1 bus",
    "1 of them", "1.5 hours", "21 cups")."""
    return [m.group(0) for m in _ONE_WORD.finditer(text) if is_plural_noun(m.group(1))]


@lru_cache(maxsize=8192)
def is_plural_noun(word: str) -> bool:
    """Whether `word` is the plural of some noun and not also a singular one."""
    engine = _engine()
    singular = engine.singular_noun(word)
    if not singular or singular == word or plural(singular) != word:
        return False
    # A word that is also a singular noun ("bus", "gas", "lens") pluralises properly;
    # inflect only appends a bare "s" to a word that is already plural ("hourss").
    return str(engine.plural_noun(word)) == word + "s"
