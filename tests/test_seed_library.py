"""The bundled seed library: every seed runs in the sandbox, reproduces its stated answer, fills
its templates, and writes solution steps that the step parser (used by RISE) can recompute."""

from __future__ import annotations

import ast
import random
from collections import Counter
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import pytest

from mathsynth.generators.common.sampling import sample_values
from mathsynth.generators.common.templates import fill
from mathsynth.generators.rise.steps import find_equations
from mathsynth.generators.seeds.library import load_library
from mathsynth.numbers import format_answer, has_places, is_whole
from mathsynth.seeds import SeedSpec, VariableSpec
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob, SandboxResult

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


def _job(seed: SeedSpec, values: dict[str, Any], job_id: str) -> SandboxJob:
    return SandboxJob(
        id=job_id,
        code=seed.program,
        kwargs=values,
        capture_locals=True,
        checks=list(seed.constraints),
    )


def _scope(values: dict[str, Any], result: SandboxResult) -> dict[str, Any]:
    """What the templates may use: solution()'s locals, the variables, and `answer`."""
    return {**(result.locals or {}), **values, "answer": result.result}


@pytest.fixture(scope="module")
def default_runs(sandbox: Sandbox) -> dict[str, SandboxResult]:
    jobs = [_job(seed, seed.default_values(), seed.id) for seed in LIBRARY]
    return {result.id: result for result in sandbox.run(jobs)}


def _step_problems(solution: str) -> list[str]:
    """Why filled solution lines fail as checkable steps (empty list when all are fine)."""
    problems = []
    for line in solution.strip().splitlines():
        equations = find_equations(line)
        if "=" not in line or not equations:
            problems.append(f"no equation in step {line!r}")
        problems.extend(f"wrong arithmetic in step {line!r}" for e in equations if not e.is_correct)
    return problems


def test_library_is_large_and_broad() -> None:
    families = Counter(seed.topics[0] for seed in LIBRARY)
    assert len(LIBRARY) >= 80
    assert len(families) >= 15
    assert min(families.values()) >= 5, families
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
def test_program_reproduces_stated_answer(
    seed: SeedSpec, default_runs: dict[str, SandboxResult]
) -> None:
    result = default_runs[seed.id]
    assert result.status == "ok", result.error
    assert result.failed_checks == []
    assert format_answer(result.result, seed.answer_type) == seed.answer


@pytest.mark.parametrize("seed", LIBRARY, ids=SEED_IDS)
def test_whole_intermediates_are_whole(
    seed: SeedSpec, default_runs: dict[str, SandboxResult]
) -> None:
    scope = _scope(seed.default_values(), default_runs[seed.id])
    assert all(name in scope for name in seed.whole)
    assert [name for name in seed.whole if not is_whole(scope[name])] == []


@pytest.mark.parametrize("seed", LIBRARY, ids=SEED_IDS)
def test_templates_fill_completely(seed: SeedSpec, default_runs: dict[str, SandboxResult]) -> None:
    values = seed.default_values()
    scope = _scope(values, default_runs[seed.id])
    question = fill(seed.question, values)  # questions may only use the variables
    solution = fill(seed.solution, scope)
    for text in (question, solution):
        assert "{" not in text and "}" not in text
    lines = solution.strip().splitlines()
    assert lines and all("=" in line for line in lines)


@pytest.mark.parametrize("seed", LIBRARY, ids=SEED_IDS)
def test_solution_steps_recompute(seed: SeedSpec, default_runs: dict[str, SandboxResult]) -> None:
    scope = _scope(seed.default_values(), default_runs[seed.id])
    assert _step_problems(fill(seed.solution, scope)) == []


def test_random_draws_are_mostly_valid(sandbox: Sandbox) -> None:
    """Sampled variants satisfy the constraints often enough, and their steps stay correct."""
    drawn: list[tuple[SeedSpec, dict[str, Any]]] = []
    for seed in LIBRARY:
        rng = random.Random(seed.id)
        drawn.extend((seed, sample_values(seed, rng)) for _ in range(DRAWS_PER_SEED))
    results = sandbox.run(
        _job(seed, values, f"{seed.id}/{i}") for i, (seed, values) in enumerate(drawn)
    )

    valid: Counter[str] = Counter()
    step_errors: list[str] = []
    for (seed, values), result in zip(drawn, results, strict=True):
        if not result.ok or format_answer(result.result, seed.answer_type) is None:
            continue
        scope = _scope(values, result)
        if not all(is_whole(scope[name]) for name in seed.whole):
            continue
        valid[seed.id] += 1
        step_errors.extend(f"{seed.id}: {p}" for p in _step_problems(fill(seed.solution, scope)))

    low = {s: valid[s] for s in SEED_IDS if valid[s] < MIN_VALID_SHARE * DRAWS_PER_SEED}
    assert low == {}
    assert step_errors == []
