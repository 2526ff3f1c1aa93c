"""Tracing straight-line programs into Lean terms: values, number types, rendering, refusals."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import pytest

from generators.lean_expr import (
    UntraceableProgramError,
    choose_domain,
    lean_number,
    render,
    trace_solution,
)
from generators.seeds import load_library
from verifiers.sandbox import Sandbox, SandboxJob


def _lean(program: str, **variables: Any) -> tuple[Fraction, str, str]:
    term = trace_solution(program, variables)
    domain = choose_domain(term)
    return term.value, domain, render(term, domain)


def test_straight_line_program_folds_into_one_term() -> None:
    program = (
        "def solution(price, pct):\n"
        '    """Discounted price."""\n'
        "    discount = price * pct / 100\n"
        "    final = price - discount\n"
        "    return final\n"
    )
    value, domain, text = _lean(program, price=80, pct=25)
    assert value == 60
    assert domain == "ℕ"
    assert text == "(80 : ℕ) - (80 : ℕ) * (25 : ℕ) / (100 : ℕ)"


@pytest.mark.parametrize(
    ("program", "variables", "value", "domain", "text"),
    [
        # Non-integral intermediate values force ℚ; decimal literals keep their spelling.
        (
            "def solution(a, b):\n    return (a - b) * 0.5 + a / b",
            {"a": 3, "b": 4},
            Fraction(1, 4),
            "ℚ",
            "((3 : ℚ) - (4 : ℚ)) * (0.5 : ℚ) + (3 : ℚ) / (4 : ℚ)",
        ),
        # A negative intermediate value makes ℕ's truncated subtraction wrong: ℤ.
        (
            "def solution(a, b):\n    d = a - b\n    return d + 10",
            {"a": 3, "b": 5},
            Fraction(8),
            "ℤ",
            "(3 : ℤ) - (5 : ℤ) + (10 : ℤ)",
        ),
        # Right operands of - and / are parenthesised (left associativity).
        (
            "def solution(a, b, c):\n    return a - (b - c) + a / (b / c)",
            {"a": 8, "b": 6, "c": 2},
            Fraction(20, 3),
            "ℚ",
            "(8 : ℚ) - ((6 : ℚ) - (2 : ℚ)) + (8 : ℚ) / ((6 : ℚ) / (2 : ℚ))",
        ),
        (
            "def solution(a):\n    return -a ** 2 + abs(a - 10) + min(a, 2, 7)",
            {"a": 3},
            Fraction(0),
            "ℤ",
            "(-((3 : ℤ) ^ (2 : ℕ))) + |(3 : ℤ) - (10 : ℤ)| + (min (min (3 : ℤ) (2 : ℤ)) (7 : ℤ))",
        ),
        (
            "def solution(a, b):\n    q, r = a // b, a % b\n    return q * 10 + r + sum([a, b])",
            {"a": 17, "b": 5},
            Fraction(54),
            "ℕ",
            "(17 : ℕ) / (5 : ℕ) * (10 : ℕ) + (17 : ℕ) % (5 : ℕ) + ((17 : ℕ) + (5 : ℕ))",
        ),
        # Fractions (objects or "a/b" strings) become (a / b : ℚ) leaves.
        (
            "from fractions import Fraction\n"
            "def solution(x, y):\n    total = x + y\n    total *= 2\n    return total",
            {"x": Fraction(1, 3), "y": "1/6"},
            Fraction(1),
            "ℚ",
            "((1 / 3 : ℚ) + (1 / 6 : ℚ)) * (2 : ℚ)",
        ),
        (
            "RATE = 0.05\ndef solution(p, years=2):\n    return p * (1 + RATE) ** years",
            {"p": 400},
            Fraction(441),
            "ℚ",
            "(400 : ℚ) * ((1 : ℚ) + (0.05 : ℚ)) ^ (2 : ℕ)",
        ),
        # int() of a whole value is the identity; Fraction(a, b) is a division.
        (
            "import math\nfrom fractions import Fraction\n"
            "def solution(n):\n    return int(n / 4) + Fraction(n, 8)",
            {"n": 12},
            Fraction(9, 2),
            "ℚ",
            "(12 : ℚ) / (4 : ℚ) + (12 : ℚ) / (8 : ℚ)",
        ),
    ],
)
def test_translation(
    program: str, variables: dict[str, Any], value: Fraction, domain: str, text: str
) -> None:
    assert _lean(program, **variables) == (value, domain, text)


def test_float_sums_are_exact_decimals() -> None:
    value, domain, _ = _lean("def solution(a, b):\n    return a + b", a=0.1, b=0.2)
    assert (value, domain) == (Fraction(3, 10), "ℚ")


@pytest.mark.parametrize(
    ("program", "variables", "reason"),
    [
        (
            "def solution(a):\n    for i in range(3):\n        a += 1\n    return a",
            {"a": 1},
            "for loop",
        ),
        ("def solution(a):\n    if a > 1:\n        return a\n    return 0", {"a": 1}, "branch"),
        ("def solution(a):\n    print(a)\n    return a", {"a": 1}, "bare call"),
        ("def solution(a):\n    return helper(a)", {"a": 1}, "calls helper()"),
        ("def solution(a):\n    return a", {}, "no value for argument 'a'"),
        ("def solution(a):\n    return b", {"a": 1}, "unknown name 'b'"),
        ("def solution(a):\n    return a / 0", {"a": 1}, "division by zero"),
        ("def solution(a):\n    return int(a / 2)", {"a": 3}, "rounds the non-integral"),
        ("def solution(a):\n    return a ** 0.5", {"a": 4}, "exponent"),
        ("def solution(a):\n    return [a]", {"a": 1}, "List expression"),
        ("def solution(a):\n    return 'x'", {"a": 1}, "non-numeric"),
        ("def solution(a):\n    a = a", {"a": 1}, "no return"),
        ("x = 1\n", {"a": 1}, "no solution()"),
        (
            "def f(a):\n    return a\ndef solution(a):\n    return f(a)",
            {"a": 1},
            "another function 'f'",
        ),
        ("import os\ndef solution(a):\n    return a", {"a": 1}, "imports 'os'"),
        ("def solution(a:\n", {"a": 1}, "not valid Python"),
        ("def solution(a):\n    return a", {"a": True}, "boolean"),
        ("def solution(a):\n    return a", {"a": float("inf")}, "not finite"),
        ("def solution(a):\n    return a", {"a": "many"}, "not a number"),
        (
            "def solution(a):\n" + "".join("    a = a + a\n" for _ in range(10)) + "    return a",
            {"a": 1},
            "more than 200 leaves",
        ),
    ],
)
def test_untraceable_programs(program: str, variables: dict[str, Any], reason: str) -> None:
    with pytest.raises(UntraceableProgramError, match=reason):
        trace_solution(program, variables)


@pytest.mark.parametrize(
    ("program", "variables", "reason"),
    [
        ("def solution(a, b):\n    return a // b + 0.5", {"a": 7, "b": 2}, "no ℚ counterpart"),
        ("def solution(a, b):\n    return a % b - 5", {"a": 7, "b": -2}, "non-positive divisor"),
    ],
)
def test_operations_without_a_faithful_lean_counterpart(
    program: str, variables: dict[str, Any], reason: str
) -> None:
    term = trace_solution(program, variables)
    with pytest.raises(UntraceableProgramError, match=reason):
        render(term, choose_domain(term))


def test_lean_number() -> None:
    assert lean_number(Fraction(44), "ℕ") == "(44 : ℕ)"
    assert lean_number(Fraction(-3), "ℤ") == "(-3 : ℤ)"
    assert lean_number(Fraction(3, 4), "ℚ") == "(3 / 4 : ℚ)"
    assert lean_number(Fraction(-3, 4), "ℚ", "-3/4") == "(-3 / 4 : ℚ)"
    assert lean_number(Fraction(3, 4), "ℚ", "0.75") == "(0.75 : ℚ)"
    with pytest.raises(UntraceableProgramError):
        lean_number(Fraction(1, 2), "ℤ")


MARBLES = (
    "def solution(red, blue, green):\n"
    "    from fractions import Fraction\n"
    "    total = red + blue + green\n"
    "    p = Fraction(blue, total)\n"
    "    return p\n"
)
PIPES = (
    "def solution(a, b):\n"
    "    from fractions import Fraction\n"
    "    rate = Fraction(1, a) + Fraction(1, b)\n"
    "    hours = 1 / rate\n"
    "    return hours\n"
)


@pytest.mark.parametrize(
    ("program", "variables", "value", "domain", "text"),
    [
        # An import inside solution() binds a name and computes nothing.
        (
            MARBLES,
            {"red": 5, "blue": 3, "green": 2},
            Fraction(3, 10),
            "ℚ",
            "(3 : ℚ) / ((5 : ℚ) + (3 : ℚ) + (2 : ℚ))",
        ),
        (
            PIPES,
            {"a": 3, "b": 6},
            Fraction(2),
            "ℚ",
            "(1 : ℚ) / ((1 : ℚ) / (3 : ℚ) + (1 : ℚ) / (6 : ℚ))",
        ),
        # Fraction(a, b) with a whole quotient stays in ℕ, where `/` is then exact.
        (
            "from fractions import Fraction\ndef solution(a, b):\n    return Fraction(a, b) + 1",
            {"a": 6, "b": 3},
            Fraction(3),
            "ℕ",
            "(6 : ℕ) / (3 : ℕ) + (1 : ℕ)",
        ),
        # Fraction(x) is x itself: of an int, a Fraction, or a float that is exactly binary.
        (
            "from fractions import Fraction\n"
            "def solution(n, q, x):\n    return Fraction(n) + Fraction(q) * Fraction(x)",
            {"n": 2, "q": "1/3", "x": 0.75},
            Fraction(9, 4),
            "ℚ",
            "(2 : ℚ) + (1 / 3 : ℚ) * (0.75 : ℚ)",
        ),
        # Aliases and module imports resolve to the same calls.
        (
            "from fractions import Fraction as F\ndef solution(a):\n    return F(a, 4)",
            {"a": 1},
            Fraction(1, 4),
            "ℚ",
            "(1 : ℚ) / (4 : ℚ)",
        ),
        (
            "import fractions\ndef solution(a):\n    return fractions.Fraction(a, 8) * 2",
            {"a": 3},
            Fraction(3, 4),
            "ℚ",
            "(3 : ℚ) / (8 : ℚ) * (2 : ℚ)",
        ),
        (
            "def solution(a, b):\n    import math as m\n    return m.floor(a / b) - 1",
            {"a": 12, "b": 4},
            Fraction(2),
            "ℕ",
            "(12 : ℕ) / (4 : ℕ) - (1 : ℕ)",
        ),
        # int() of an exact float product: 0.5 and 0.25 * 8 are binary doubles.
        (
            "def solution(x):\n    return int(x * 8) + 0.5",
            {"x": 0.25},
            Fraction(5, 2),
            "ℚ",
            "(0.25 : ℚ) * (8 : ℚ) + (0.5 : ℚ)",
        ),
    ],
)
def test_imports_and_fraction_constructors(
    program: str, variables: dict[str, Any], value: Fraction, domain: str, text: str
) -> None:
    assert _lean(program, **variables) == (value, domain, text)


@pytest.mark.parametrize(
    ("program", "variables", "reason"),
    [
        # Python would raise NameError: Fraction was never imported.
        ("def solution(a):\n    return Fraction(a, 2)", {"a": 1}, "calls Fraction \\(not imp"),
        # Fraction(0.1) is 3602879701896397/36028797018963968, not 1/10.
        (
            "from fractions import Fraction\ndef solution(x):\n    return Fraction(x)",
            {"x": 0.1},
            "does not represent exactly",
        ),
        # int(0.29 * 100) is 28 in Python, 29 in exact arithmetic.
        ("def solution(x):\n    return int(x * 100)", {"x": 0.29}, "does not represent exactly"),
        (
            "import math\ndef solution(x):\n    return math.floor(x * 3 * 10)",
            {"x": 0.1},
            "does not represent exactly",
        ),
        # Python raises TypeError for Fraction(1.5, 2).
        (
            "from fractions import Fraction\ndef solution(x):\n    return Fraction(x, 2)",
            {"x": 1.5},
            "float numerator",
        ),
        ("def solution(a):\n    from os import path\n    return a", {"a": 1}, "imports 'os'"),
        ("from fractions import *\ndef solution(a):\n    return a", {"a": 1}, "star import"),
        ("def solution(a):\n    from . import x\n    return a", {"a": 1}, "relative"),
        (
            "from fractions import Fraction\ndef solution(a):\n    Fraction = 2\n    return a",
            {"a": 1},
            "assigns to the imported name 'Fraction'",
        ),
        ("def solution(math):\n    import math\n    return 1", {"math": 1}, "rebinds"),
        ("def solution(f):\n    return f(2)", {"f": 1}, "calls the value 'f'"),
        ("import math\ndef solution(a):\n    return math.sqrt(a)", {"a": 4}, "calls math.sqrt"),
    ],
)
def test_unsound_conversions_and_imports_are_refused(
    program: str, variables: dict[str, Any], reason: str
) -> None:
    with pytest.raises(UntraceableProgramError, match=reason):
        trace_solution(program, variables)


def test_every_bundled_seed_program_traces_to_what_the_sandbox_computes() -> None:
    specs = load_library()
    jobs = [SandboxJob(id=s.id, code=s.program, kwargs=s.default_values()) for s in specs]
    with Sandbox(workers=2, timeout_s=10.0) as sandbox:
        results = sandbox.run(jobs)
    for spec, result in zip(specs, results, strict=True):
        term = trace_solution(spec.program, spec.default_values())
        render(term, choose_domain(term))
        assert result.status == "ok", (spec.id, result.error)
        if term.exact:
            assert Fraction(result.result) == term.value, spec.id
        else:
            # A float result that binary floating point rounded: the trace is the exact value.
            assert float(term.value) == pytest.approx(result.result, rel=1e-12), spec.id
