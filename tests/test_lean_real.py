"""Real Lean statements with known outcomes, run through a real REPL (with Mathlib) when one is
configured: MATHSYNTH_TEST_LEAN_REPL="env -C /path/to/mathlib4 lake env /path/to/repl".

Without it the module is skipped with the reason (shown by `pytest -rs`): no Lean toolchain can
be installed in every environment, and a Mathlib import takes a minute, so this is opt-in.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from mathsynth.generators.formalize.offline import Formalize
from mathsynth.records import FormalStatement, Problem, Verification
from mathsynth.verifiers.lean import LeanItem, ReplBackend

REPL_CMD = os.environ.get("MATHSYNTH_TEST_LEAN_REPL", "").strip()
if not REPL_CMD:
    pytest.skip(
        "real Lean tests need MATHSYNTH_TEST_LEAN_REPL (a command starting a Lean REPL inside a "
        f"Mathlib project); lean on PATH: {shutil.which('lean') or 'no'}, "
        f"repl on PATH: {shutil.which('repl') or 'no'}",
        allow_module_level=True,
    )

pytestmark = pytest.mark.slow

CASES = [
    ("theorem t1 : ((24 : ℚ) * 6 - 100) = 44 := by norm_num", "proved"),
    ("theorem t2 : (2 : ℕ) + 2 = 5 := by norm_num", "failed"),
    ("theorem t3 : (1 : ℚ) / 3 + 1 / 6 = 1 / 2 := by sorry", "compiled"),
    ("theorem t4 (x : ℝ) : x ^ 2 ≥ 0 := by positivity", "proved"),
    ("theorem t5 : (7 : ℤ) % 3 = 1 := by decide", "proved"),
    ('theorem t6 : (3 : ℕ) = "three" := by rfl', "failed"),
    ("theorem t7 (a b : ℕ) (h : a < b) : a ≤ b := h.le", "proved"),
]


@pytest.fixture(scope="module")
def backend() -> Iterator[ReplBackend]:
    with ReplBackend(REPL_CMD, timeout_s=120.0, start_timeout_s=900.0) as repl:
        yield repl


def test_known_statements(backend: ReplBackend) -> None:
    results = backend.check([LeanItem(f"c{i}", code) for i, (code, _) in enumerate(CASES)])
    assert backend.disabled_reason is None
    assert [r.status for r in results] == [expected for _, expected in CASES], results


def test_program_derived_statements_are_proved(backend: ReplBackend) -> None:
    verified = Verification("verified", "exec", "")
    programs = [
        ("def solution(p, q):\n    return p * q / 100", {"p": 80, "q": 25}, "20"),
        ("def solution(a, b):\n    return (a - b) * 0.5 + a / b", {"a": 3, "b": 4}, "1/4"),
        ("def solution(a, b):\n    return a - b * 2", {"a": 3, "b": 5}, "-7"),
        ("def solution(a, b):\n    return a // b * 10 + a % b", {"a": 17, "b": 5}, "32"),
        (
            "def solution(a, b):\n    return max(a, b) - abs(a - b) + min(a, b)",
            {"a": 3, "b": 4},
            "6",
        ),
        ("def solution(x):\n    return 400 * (1 + x) ** 2", {"x": 0.05}, "441"),
    ]
    problems = [
        Problem("t", "m", "s", f"q{i}", "", answer, program, variables, verification=verified)
        for i, (program, variables, answer) in enumerate(programs)
    ]
    formals = [r for r in Formalize(lean=backend).run(problems) if isinstance(r, FormalStatement)]
    assert [f.lean_status for f in formals] == ["proved"] * len(programs), [
        (f.formal_statement, f.lean_messages) for f in formals
    ]
