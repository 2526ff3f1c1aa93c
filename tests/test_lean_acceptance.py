"""The acceptance rule on REPL replies: compiled / proved / failed."""

from __future__ import annotations

from typing import Any

import pytest

from mathsynth.verifiers.lean import LeanItem, judge


def _msg(severity: str, data: str) -> dict[str, Any]:
    return {"severity": severity, "pos": {"line": 2, "column": 4}, "data": data}


@pytest.mark.parametrize(
    ("code", "reply", "status"),
    [
        ("theorem t : 1 = 1 := by rfl", {"env": 1, "messages": []}, "proved"),
        ("theorem t : 1 = 1 := by rfl", {"env": 1}, "proved"),
        (
            "theorem t : 1 = 1 := by simp",
            {"env": 1, "messages": [_msg("info", "Try this")]},
            "proved",
        ),
        (
            "theorem t : 1 = 2 := by rfl",
            {"env": 1, "messages": [_msg("error", "mismatch")]},
            "failed",
        ),
        (
            "theorem t : 1 = 1 := by sorry",
            {"env": 1, "messages": [_msg("warning", "declaration uses 'sorry'")]},
            "compiled",
        ),
        ("theorem t : 1 = 1 := by\n  simp", {"env": 1, "sorries": [{"goal": "⊢ x"}]}, "compiled"),
        # Term-mode sorry the REPL does not list: the token in the code still counts.
        ("theorem t : 1 = 1 := sorry", {"env": 1, "messages": []}, "compiled"),
        ("theorem t : 1 = 1 := by admit", {"env": 1, "messages": []}, "compiled"),
        ("axiom cheat : False\ntheorem t : 1 = 2 := cheat.elim", {"env": 1}, "compiled"),
        ("theorem t : 1 = 1 := by rfl -- no sorry needed", {"env": 1}, "proved"),
        ("theorem t : 1 = 1 := by rfl /- sorry -/", {"env": 1}, "proved"),
        ("theorem sorry_free : 1 = 1 := by rfl", {"env": 1}, "proved"),
        ("x", {"message": "Unknown environment."}, "failed"),
    ],
)
def test_acceptance_rule(code: str, reply: dict[str, Any], status: str) -> None:
    assert judge(LeanItem("i", code), reply).status == status


def test_messages_are_kept_with_severity_and_position() -> None:
    reply = {"env": 0, "messages": [_msg("error", "unsolved goals\n⊢ False")]}
    result = judge(LeanItem("i", "theorem t : False := by simp"), reply)
    assert result.id == "i"
    assert result.messages == ["error 2:4: unsolved goals\n⊢ False"]


def test_error_beats_sorry() -> None:
    reply = {
        "env": 0,
        "messages": [_msg("warning", "declaration uses 'sorry'"), _msg("error", "bad")],
    }
    assert judge(LeanItem("i", "theorem t : 1 = 1 := sorry"), reply).status == "failed"
