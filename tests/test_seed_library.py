"""The bundled seed library: every seed passes the seed lint (static rules, its program
reproduces the stated answer in every phrasing, random draws pass, rendered text has no
"1 <plural>", solution steps recompute for RISE), and the library is broad."""

from __future__ import annotations

import ast
import random
from collections import Counter
from collections.abc import Iterator
from fractions import Fraction

import pytest

from mathsynth.generators.common.instantiate import Draft, render_variant, sandbox_job
from mathsynth.generators.common.pools import bundled_pools
from mathsynth.generators.common.sampling import sample_values
from mathsynth.generators.seeds.library import load_library
from mathsynth.generators.seeds.lint import lint_specs
from mathsynth.numbers import has_places
from mathsynth.seeds import SeedSpec, VariableSpec
from mathsynth.verifiers.sandbox import Sandbox

LIBRARY = load_library()
SEED_IDS = [seed.id for seed in LIBRARY]

# Random draws per seed in the acceptance test, and the share that must satisfy every
# constraint: the sampler resamples rejected draws, so a low share wastes sandbox runs.
DRAWS_PER_SEED = 40
MIN_VALID_SHARE = 0.3


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=2, timeout_s=10.0) as sb:
        yield sb


def test_library_is_large_and_broad() -> None:
    families = Counter(seed.topics[0] for seed in LIBRARY)
    assert len(LIBRARY) >= 80
    assert len(families) >= 15
    assert min(families.values()) >= 2, families
    # A second topic must name a family too, or the concept graph grows a misspelt node.
    assert {topic for seed in LIBRARY for topic in seed.topics} <= set(families)


def test_knowledge_points_are_shared() -> None:
    # The MathScale concept graph is built from co-occurrences: one-off points are dead ends.
    counts = Counter(kp for seed in LIBRARY for kp in seed.knowledge_points)
    shared = [kp for kp, n in counts.items() if n >= 2]
    assert len(shared) >= len(counts) / 2, sorted(kp for kp, n in counts.items() if n == 1)


def test_difficulties_are_mixed() -> None:
    levels = Counter(seed.difficulty for seed in LIBRARY)
    assert {1, 2, 3, 4} <= set(levels)
    multi_step = [seed for seed in LIBRARY if len(seed.solution.strip().splitlines()) >= 3]
    assert len(multi_step) >= len(LIBRARY) / 3


@pytest.mark.parametrize("seed", LIBRARY, ids=SEED_IDS)
def test_program_parameters_are_the_variables(seed: SeedSpec) -> None:
    functions = [
        node
        for node in ast.parse(seed.program).body
        if isinstance(node, ast.FunctionDef) and node.name == "solution"
    ]
    assert len(functions) == 1, "program must define solution() exactly once"
    params = [arg.arg for arg in functions[0].args.args]
    assert sorted(params) == sorted(seed.variables)


def _default_problems(name: str, spec: VariableSpec) -> list[str]:
    value = spec.default_value()
    if spec.choices is not None:
        allowed = [Fraction(str(c)) if spec.type == "fraction" else c for c in spec.choices]
        return [] if value in allowed else [f"{name}: default {value} not among choices"]
    assert spec.min is not None and spec.max is not None
    problems = []
    if not spec.min <= value <= spec.max:
        problems.append(f"{name}: default {value} outside [{spec.min}, {spec.max}]")
    if spec.multiple_of and value % spec.multiple_of:
        problems.append(f"{name}: default {value} not a multiple of {spec.multiple_of}")
    if spec.type == "decimal" and not has_places(value, spec.places):
        problems.append(f"{name}: default {value} has more than {spec.places} places")
    if spec.type == "fraction" and value.denominator not in (spec.denominators or []):
        problems.append(f"{name}: default {value} has a denominator not in the list")
    return problems


@pytest.mark.parametrize("seed", LIBRARY, ids=SEED_IDS)
def test_defaults_are_draws_of_their_specs(seed: SeedSpec) -> None:
    problems = [p for name, spec in seed.variables.items() for p in _default_problems(name, spec)]
    assert not problems


@pytest.mark.parametrize("seed", LIBRARY, ids=SEED_IDS)
def test_seed_passes_the_lint(seed: SeedSpec, sandbox: Sandbox) -> None:
    """The seed lint's whole verdict: static rules, defaults reproduce `answer` in every
    phrasing, enough random draws pass, no "1 <plural>", no wrong a/an, steps recompute."""
    (report,) = lint_specs([seed], bundled_pools(), sandbox, draws=DRAWS_PER_SEED)
    assert report.problems == []
    assert report.passed >= MIN_VALID_SHARE * DRAWS_PER_SEED


def test_every_phrasing_is_used_and_pools_vary(sandbox: Sandbox) -> None:
    """Over many draws a seed shows each of its phrasings and more than one pool entry."""
    seed = next(s for s in LIBRARY if s.pools and len(s.questions) >= 3)
    rng = random.Random(0)
    drawn = [sample_values(seed, rng) for _ in range(60)]
    results = sandbox.run(sandbox_job(str(i), seed, v) for i, v in enumerate(drawn))
    drafts = [
        render_variant(seed, v, r, salt=i)
        for i, (v, r) in enumerate(zip(drawn, results, strict=True))
    ]
    drafts = [d for d in drafts if isinstance(d, Draft)]
    assert {d.phrasing for d in drafts} == set(range(len(seed.questions)))
    for role in seed.pools:
        assert len({d.roles[role].text for d in drafts}) > 1
