"""Tracing straight-line programs into Lean terms: values, number types, rendering, refusals."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from mathsynth.generators.common.compose import Composition, compatible_slots, compose_program
from mathsynth.generators.formalize.term import (
    UntraceableProgramError,
    bare_number,
    choose_domain,
    lean_number,
    render,
)
from mathsynth.generators.formalize.term import variables as term_variables
from mathsynth.generators.formalize.trace import trace_solution
from mathsynth.generators.seeds.library import load_library
from mathsynth.verifiers.sandbox import Sandbox, SandboxJob


def _lean(program: str, **variables: Any) -> tuple[Fraction, str, str]:
    """(value, domain, closed rendering): the tracing semantics, with the arguments written as
    their values; `test_arguments_stay_named_variables` covers the named rendering."""
    term = trace_solution(program, variables)
    domain = choose_domain(term)
    return term.value, domain, render(term, domain, closed=True)


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


@pytest.mark.parametrize(
    ("program", "variables", "names", "text"),
    [
        # Same-type arguments render bare, and so do the literals beside them.
        (
            "def solution(price, pct):\n    discount = price * pct / 100\n"
            "    return price - discount\n",
            {"price": 80, "pct": 25},
            ["price", "pct"],
            "price - price * pct / 100",
        ),
        # A ℕ argument in a ℚ term is cast; a decimal argument is a ℚ variable.
        (
            "def solution(n, rate):\n    return n * rate / 3",
            {"n": 4, "rate": 0.5},
            ["n", "rate"],
            "(n : ℚ) * rate / 3",
        ),
        # A negative value is an ℤ variable; negation and calls start their own expression,
        # so literals there keep their ascription.
        (
            "def solution(t, d):\n    return -t + max(d, 2) - abs(t)",
            {"t": -5, "d": 1},
            ["t", "d"],
            "(-t) + (max (d : ℤ) (2 : ℤ)) - |t|",
        ),
        # An exponent is its own ℕ expression; defaults and constants stay literals.
        (
            "RATE = 0.05\ndef solution(p, years, extra=1):\n"
            "    return p * (1 + RATE) ** years + extra",
            {"p": 400, "years": 2},
            ["p", "years"],
            "(p : ℚ) * ((1 : ℚ) + (0.05 : ℚ)) ^ years + 1",
        ),
        # Variables survive inlined helper functions; Fraction strings are ℚ variables.
        (
            "def solution(a, q):\n    def twice(x):\n        return 2 * x\n    return twice(a) + q",
            {"a": 3, "q": "1/3"},
            ["a", "q"],
            "2 * (a : ℚ) + q",
        ),
    ],
)
def test_arguments_stay_named_variables(
    program: str, variables: dict[str, Any], names: list[str], text: str
) -> None:
    term = trace_solution(program, variables)
    assert [v.name for v in term_variables(term)] == names
    assert render(term, choose_domain(term)) == text
    assert {v.name: v.value for v in term_variables(term)} == {
        n: Fraction(str(variables[n])) for n in names
    }


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
        ("class C:\n    pass\ndef solution(a):\n    return a", {"a": 1}, "ClassDef"),
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
        # math.trunc(0.57 * 100) is 56: Python's rounding misses the exact value 57.
        (
            "import math\ndef solution(x):\n    return math.trunc(x * 100)",
            {"x": 0.57},
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
    # Exact (LaTeX) answers come from sympy programs, which formalization from the program
    # does not translate (those rows are rejected there as exact_answer). Of the others, a
    # program with lists, generators or library calls (gcd, factorial) is refused as
    # untraceable (rejected as untraceable_program); every one that traces must compute what
    # the sandbox computes.
    specs = [s for s in load_library() if s.answer_type != "exact"]
    jobs = [SandboxJob(id=s.id, code=s.program, kwargs=s.default_values()) for s in specs]
    with Sandbox(workers=2, timeout_s=10.0) as sandbox:
        results = sandbox.run(jobs)
    traced = 0
    for spec, result in zip(specs, results, strict=True):
        assert result.status == "ok", (spec.id, result.error)
        try:
            term = trace_solution(spec.program, spec.default_values())
        except UntraceableProgramError:
            continue
        render(term, choose_domain(term))
        traced += 1
        if term.exact:
            assert Fraction(result.result) == term.value, spec.id
        else:
            # A float result that binary floating point rounded: the trace is the exact value.
            assert float(term.value) == pytest.approx(result.result, rel=1e-12), spec.id
    assert traced >= 0.85 * len(specs)


# --------------------------------------------------------------------------- nested functions

BY_ID = {spec.id: spec for spec in load_library()}


def _composed(a: str, b: str, slot: str) -> tuple[str, dict[str, Any]]:
    spec_a, spec_b = BY_ID[a], BY_ID[b]
    program = compose_program(Composition(spec_a, spec_b, slot))
    return program.code, program.variables(spec_a.default_values(), spec_b.default_values())


@pytest.mark.parametrize(
    ("a", "b", "slot", "value", "domain", "text"),
    [
        # int slot: A's answer goes through int(round(...)), the identity on a whole value.
        (
            "area_perimeter-garden-fence",
            "arithmetic-theatre-seats",
            "sold",
            Fraction(127),
            "ℕ",
            "(18 : ℕ) * (24 : ℕ) - ((2 : ℕ) * ((12 : ℕ) + (8 : ℕ)) * (7 : ℕ) + (25 : ℕ))",
        ),
        # decimal slot: float(...) of A's (whole) mean.
        (
            "averages-parcel-removed",
            "decimals-jogging-goal",
            "mon",
            Fraction(3),
            "ℚ",
            "(20 : ℚ) - (((6 : ℚ) * (8 : ℚ) - (13 : ℚ)) / ((6 : ℚ) - (1 : ℚ))"
            " + (6.2 : ℚ) + (3.8 : ℚ))",
        ),
        # fraction slot: __import__('fractions').Fraction(...).limit_denominator(10**6).
        (
            "fractions-sugar-batches",
            "fractions-walking-goal",
            "monday",
            Fraction(4, 3),
            "ℚ",
            "(6 : ℚ) - (((3 / 4 : ℚ) + (1 / 3 : ℚ)) * (2 : ℚ) + (5 / 2 : ℚ))",
        ),
    ],
)
def test_composed_programs_inline_both_seeds(
    a: str, b: str, slot: str, value: Fraction, domain: str, text: str
) -> None:
    program, variables = _composed(a, b, slot)
    assert _lean(program, **variables) == (value, domain, text)


def test_rounding_a_float_that_python_rounds_back_to_the_exact_value() -> None:
    # 66 / 200 * 100 is 33.00000000000001 in Python; int(round(.)) makes it 33 again.
    program, variables = _composed(
        "percentages-survey-yes", "averages-monthly-savings-target", "jan"
    )
    variables["said_no"] = 134
    assert _lean(program, **variables) == (
        Fraction(69),
        "ℚ",
        "(4 : ℚ) * (50 : ℚ) - (((200 : ℚ) - (134 : ℚ)) / (200 : ℚ) * (100 : ℚ)"
        " + (60 : ℚ) + (38 : ℚ))",
    )


@pytest.mark.parametrize(
    ("program", "variables", "value", "domain", "text"),
    [
        # Positional and keyword arguments, a default, a helper defined at module level.
        (
            "def share(total, people=4):\n    return total / people\n"
            "def solution(a, b):\n"
            "    def twice(x):\n        return 2 * x\n"
            "    return twice(share(a)) + share(people=b, total=a)",
            {"a": 12, "b": 3},
            Fraction(10),
            "ℕ",
            "(2 : ℕ) * ((12 : ℕ) / (4 : ℕ)) + (12 : ℕ) / (3 : ℕ)",
        ),
        # A closure reads the enclosing scope's constant and import; a dict is ** unpacked.
        (
            "def solution(p):\n"
            "    RATE = 0.05\n"
            "    from fractions import Fraction\n"
            "    def grow(p, years):\n"
            "        return p * (1 + RATE) ** years + Fraction(1, 2)\n"
            "    args = {'years': 2, 'p': p}\n"
            "    return grow(**args)",
            {"p": 400},
            Fraction(883, 2),
            "ℚ",
            "(400 : ℚ) * ((1 : ℚ) + (0.05 : ℚ)) ^ (2 : ℕ) + (1 : ℚ) / (2 : ℚ)",
        ),
        # The inner `solution` is a local of part(), distinct from the outer one.
        (
            "def solution(a):\n"
            "    def part(kwargs):\n"
            "        def solution(a):\n            return a - 1\n"
            "        return solution(**kwargs)\n"
            "    return part({'a': a}) * 3",
            {"a": 5},
            Fraction(12),
            "ℕ",
            "((5 : ℕ) - (1 : ℕ)) * (3 : ℕ)",
        ),
    ],
)
def test_nested_function_calls_are_inlined(
    program: str, variables: dict[str, Any], value: Fraction, domain: str, text: str
) -> None:
    assert _lean(program, **variables) == (value, domain, text)


@pytest.mark.parametrize(
    ("program", "reason"),
    [
        (
            "def solution(a):\n    def f(n):\n        return f(n)\n    return f(a)",
            "calls itself",
        ),
        ("def solution(a):\n    return a + 1 if a else solution(a - 1)", "IfExp"),
        ("def solution(a):\n    return solution(a)", "calls itself"),
        (
            "def solution(a):\n    b = f(a)\n    def f(x):\n        return x\n    return b",
            "'f' is used before it is assigned",
        ),
        # Python reads k when f() runs (2), not when it was defined (1): refused either way.
        (
            "def solution(a):\n    k = 1\n    def f(x):\n        return x * k\n"
            "    k = 2\n    return f(a)",
            "rebound between its definition and its call",
        ),
        (
            "def solution(a):\n    def f(x):\n        return x * k\n    k = 2\n    return f(a)",
            "rebound between its definition and its call",
        ),
        # A local assigned later in the function: Python raises UnboundLocalError.
        (
            "K = 3\ndef solution(a):\n    b = a + K\n    K = 1\n    return b",
            "'K' is used before it is assigned",
        ),
        (
            "def solution(a):\n    def f(x, y=[1]):\n        return x\n    return f(a) + f(a, 2)",
            "default of argument 'y' of f\\(\\)",
        ),
        (
            "def solution(a):\n    def f(x, y):\n        return x\n    return f(a)",
            "no value for argument 'y' of f\\(\\)",
        ),
        (
            "def solution(a):\n    def f(x):\n        return x\n    return f(a, x=a)",
            "repeated argument 'x'",
        ),
        ("def solution(a):\n    def f(x):\n        return x\n    return f(z=a)", "unknown"),
        ("def solution(a):\n    def f(x):\n        return x\n    return f(a, a)", "too many"),
        (
            "def solution(a):\n    def f(x):\n        return x\n    return f(**a)",
            "other than a dict",
        ),
        ("def solution(a):\n    def f(*xs):\n        return a\n    return f(a)", "\\*args"),
        (
            "def solution(a):\n    @staticmethod\n    def f(x):\n        return x\n    return f(a)",
            "decorated",
        ),
        (
            "def solution(a):\n    def f(x):\n        global a\n        return x\n    return f(a)",
            "global or nonlocal",
        ),
        ("def solution(a):\n    def f(x):\n        return x\n    return f", "not a number"),
        (
            "def solution(a):\n    def f(x):\n        x = 1\n    return f(a)",
            "f\\(\\) has no return",
        ),
        # Fraction(x).limit_denominator(n) is x only when x's denominator is at most n.
        (
            "from fractions import Fraction\n"
            "def solution(a):\n    return Fraction(a, 7).limit_denominator(5)",
            "limit_denominator\\(5\\) changes 1/7",
        ),
        ("def solution(a):\n    return a.limit_denominator(5)", "other than a Fraction"),
    ],
)
def test_nested_functions_that_are_refused(program: str, reason: str) -> None:
    with pytest.raises(UntraceableProgramError, match=reason):
        trace_solution(program, {"a": 1})


def test_composed_bundled_seeds_trace_to_what_the_sandbox_computes() -> None:
    # Compatible ordered pairs (first slot), spread over at most 60 of them.
    cases: list[tuple[str, dict[str, Any]]] = []
    specs = list(BY_ID.values())
    pairs = [(a, b) for a in specs for b in specs if a is not b and compatible_slots(a, b)]
    for spec_a, spec_b in pairs[:: max(1, len(pairs) // 40)][:60]:
        cases.append(_composed(spec_a.id, spec_b.id, compatible_slots(spec_a, spec_b)[0]))
    assert len(cases) >= 20
    jobs = [SandboxJob(id=str(i), code=code, kwargs=v) for i, (code, v) in enumerate(cases)]
    with Sandbox(workers=2, timeout_s=10.0) as sandbox:
        results = sandbox.run(jobs)
    traced = 0
    for (code, variables), result in zip(cases, results, strict=True):
        assert result.status == "ok", result.error
        try:
            term = trace_solution(code, variables)
        except UntraceableProgramError:
            # a rounding Python does differently from exact arithmetic, or a part that does
            # not trace alone (lists, generators, library calls)
            continue
        render(term, choose_domain(term))
        traced += 1
        if term.exact:
            assert Fraction(result.result) == term.value
        else:
            assert float(term.value) == pytest.approx(result.result, rel=1e-12)
    assert traced >= len(cases) * 0.75


def test_pipeline_code_parses_python_only_under_the_lock() -> None:
    """Batches run in threads and CPython 3.11's AST constructor is not thread-safe
    (python/cpython#106905): every in-process `ast.parse` must go through mathsynth.pysource.
    The sandbox worker parses in its own single-threaded process."""
    root = Path(__file__).resolve().parents[1]
    allowed = {root / "mathsynth" / "pysource.py", root / "verifiers" / "sandbox" / "worker.py"}
    offenders = [
        str(path.relative_to(root))
        for folder in ("mathsynth", "storage", "verifiers", "generators", "executor", "flows")
        for path in (root / folder).rglob("*.py")
        if path not in allowed and "ast.parse(" in path.read_text(encoding="utf-8")
    ]
    assert offenders == []


def test_whole_values_are_whole_literals_whatever_their_text() -> None:
    """A given written "5.0" is bound in ℕ, which has no decimal literals: `price = 5`."""
    assert bare_number(Fraction(5), "5.0") == "5"
    assert bare_number(Fraction(-3), "-3.00") == "-3"
    assert bare_number(Fraction(9, 10), "0.90") == "0.90"
    assert bare_number(Fraction(3, 4)) == "3 / 4"
