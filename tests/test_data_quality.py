"""Whole-build properties of the embedded default build a trainer relies on: no "1 <plural>",
articles and verbs that agree,
every composition link of one kind and unit and in range, one answer format per answer type in
`answer`, the solution and `messages`, plausible answers, no scaffolding sentences, natural
restatements, real variety. The figures themselves are printed by bench/data_quality.py."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from dataset_checks import read_table

from mathsynth.generators.common.instantiate import answer_line
from mathsynth.generators.common.templates import drop_repeated_sides
from mathsynth.generators.seeds.library import load_library
from mathsynth.inflection import one_plural
from mathsynth.numbers import answer_fits_type, parse_number_or_none

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def rows(default_build: Path) -> list[dict[str, Any]]:
    out = read_table(default_build, "sft")
    for r in out:
        r["prov"] = json.loads(r["provenance"])
    return out


def test_no_one_plural_anywhere(rows: list[dict[str, Any]]) -> None:
    found = [(r["id"], p) for r in rows for p in one_plural(f"{r['question']}\n{r['solution']}")]
    assert len(rows) >= 10_000
    assert found == []


# "of the the money ...": a composed phrase after a template's own article; "1 glass are left"
_DOUBLED = re.compile(r"\b(?:the|a|an) (?:the|a|an)\b", re.IGNORECASE)
_ONE_ARE = re.compile(r"(?<![\d.,/$])\b1 [a-z]+ (?:are|were|have|remain|go)\b")


def test_articles_verbs_and_steps_read_right_everywhere(rows: list[dict[str, Any]]) -> None:
    """No "a 8-liter jug", no doubled determiner, no "1 glass are left", no step that says
    "$\\frac{1}{12} = \\frac{1}{12}$", in any row of any method (the seed lint's random draws
    may miss the one value that breaks a template)."""
    from mathsynth.generators.seeds.lint import wrong_articles

    found = []
    for r in rows:
        text = f"{r['question']}\n{r['solution']}"
        found += [(r["id"], p) for p in wrong_articles(text)]
        found += [(r["id"], m.group(0)) for m in _DOUBLED.finditer(text)]
        found += [(r["id"], m.group(0)) for m in _ONE_ARE.finditer(text)]
        # LaTeX rows: no "$\\sqrt{58} = \\sqrt{58}$" step
        if r["prov"]["answer_type"] == "exact" and drop_repeated_sides(text) != text:
            found.append((r["id"], "a step repeats a side of its equation"))
    assert found == []


def test_every_composition_link_is_one_kind_and_unit_and_in_range(
    rows: list[dict[str, Any]],
) -> None:
    linked = [
        r for r in rows if r["method"] in ("compose", "concept_walk") and "partner" in r["prov"]
    ]
    assert len(linked) >= 50  # compositions are made, and each records its link
    pairs: Counter[tuple[str, str]] = Counter()
    for r in linked:
        link = r["prov"]["link"]
        assert link["from_kind"] == link["to_kind"], link
        if link["from_unit"] != link["to_unit"]:
            assert link["factor"] != "1", link
            assert " * " in r["solution"] or " / " in r["solution"]
        else:
            assert link["factor"] == "1", link
        assert link["in_range"] is True, link
        pairs[(link["from_kind"], link["to_kind"])] += 1
        assert "Let N" not in r["question"] and "question above" not in r["question"]
    assert len(pairs) >= 1


def test_one_answer_format_per_type_everywhere(rows: list[dict[str, Any]]) -> None:
    types: Counter[str] = Counter()
    for r in rows:
        kind = r["prov"].get("answer_type")
        assert kind is not None, r["id"]
        assert answer_fits_type(r["answer"], kind), (r["id"], kind, r["answer"])
        assert r["solution"].splitlines()[-1] == answer_line(r["answer"], kind), r["id"]
        user, assistant = r["messages"]
        assert user["content"] == r["question"] and assistant["content"] == r["solution"]
        types[kind] += 1
    assert types["money"] > 0 and types["exact"] > 0 and types["fraction"] > 0
    money = [r for r in rows if r["prov"]["answer_type"] == "money"]
    assert all(len(r["answer"].rsplit(".", 1)[-1]) == 2 for r in money)
    exact = [r for r in rows if r["prov"]["answer_type"] == "exact"]
    # a LaTeX answer is judged by the answer checker too; a whole-number one ("14") is
    # compared exactly by the re-execution alone
    latex = [r for r in exact if parse_number_or_none(r["answer"]) is None]
    assert latex and all(r["verification"]["checker"] == "exec+answer_check" for r in latex)


def test_answers_lie_in_their_seeds_ranges(rows: list[dict[str, Any]]) -> None:
    """The chess club of 480 members: every single-seed row's answer is in the declared range."""
    ranges = {s.id: s.result.range for s in load_library() if s.result and s.result.range}
    checked = 0
    for r in rows:
        if "partner" in r["prov"] or r["seed_id"] not in ranges:
            continue
        if r["prov"]["answer_type"] == "exact" and "\\" in r["answer"]:
            continue  # a LaTeX value ("\\frac{1}{9}"): its range was checked on the number
        lo, hi = ranges[r["seed_id"]]
        assert Fraction(str(lo)) <= Fraction(r["answer"]) <= Fraction(str(hi)), r["id"]
        checked += 1
    assert checked >= 10_000


def test_no_scaffolding_and_restatements_explain_their_step(rows: list[dict[str, Any]]) -> None:
    for r in rows:
        assert "Here is what we know" not in r["question"]
        # "the ratio ... is 6:6" says nothing: ratios are drawn in lowest terms, unequal
        assert not re.search(r"ratio (\d+):\1(?![:\d])", r["question"]), r["question"]
    restated = [r for r in rows if r["method"] == "percent_restatement"]
    assert len(restated) >= 20
    for r in restated:
        first = r["solution"].splitlines()[0]
        assert " is " in first and "=" in first, first  # "25% is 25 / 100 = 1/4, so ..."
        assert "% liter" not in r["question"] and "/100" not in r["question"]


def test_variety(rows: list[dict[str, Any]]) -> None:
    """Phrasings and pools vary the text: many distinct numbers-masked questions per seed,
    and every method's most repeated sentence is in a minority of its rows."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.data_quality import mask, neighbour_shares, sentences

    by_seed: dict[str, set[str]] = {}
    for r in rows:
        if r["method"] == "instantiate":
            by_seed.setdefault(r["seed_id"], set()).add(mask(r["question"]))
    assert min(len(v) for v in by_seed.values()) >= 3
    for method in {r["method"] for r in rows}:
        mine = [r for r in rows if r["method"] == method]
        counts: Counter[str] = Counter()
        for r in mine:
            counts.update(set(sentences(f"{r['question']}\n{r['solution']}")))
        assert counts.most_common(1)[0][1] / len(mine) < 0.5, (method, counts.most_common(1))
    sample = random.Random(0).sample(rows, 2000)
    (share,) = neighbour_shares([r["question"] for r in sample], (0.9,))
    assert share < 0.25
