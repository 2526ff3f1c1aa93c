"""The variables codec: how a row's `variables` column holds the values of `solution(...)`.

Contract users rely on (program-of-thought training, RL rewards, re-verification), with the
standard library only:

    ns = {}
    exec(row["program"], ns)
    ns["solution"](**json.loads(row["variables"]))      # == row["answer"]

JSON has no exact rational, so a Fraction value is stored as the string "n/d" and every
program that takes a fraction variable converts it at the top of `solution()` (`exact_inputs`
adds those lines when a spec is built). `Fraction("3/4")` and `Fraction(Fraction(3, 4))` are
the same value, so the same program runs unchanged in the sandbox (which passes Fractions)
and on plain JSON.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from mathsynth import pyparse


def encode_variables(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe variables: Fractions become "n/d" strings (see `decode_variables`)."""
    return {
        k: (f"{v.numerator}/{v.denominator}" if isinstance(v, Fraction) else v)
        for k, v in values.items()
    }


def decode_variables(values: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `encode_variables`: "n/d" strings become Fractions again."""
    out: dict[str, Any] = {}
    for k, v in values.items():
        if isinstance(v, str) and "/" in v:
            try:
                out[k] = Fraction(v)
                continue
            except ValueError:
                pass
        out[k] = v
    return out


def exact_inputs(program: str, names: Iterable[str]) -> str:
    """`program` with `name = Fraction(name)` for each of `names` at the top of `solution()`.

    Idempotent: a program that already starts that way is returned unchanged. Programs
    without a top-level `def solution` (or that do not parse) are returned as they are; the
    sandbox reports those when it runs them.
    """
    wanted = [n for n in dict.fromkeys(names)]
    if not wanted:
        return program
    try:
        module = pyparse.module(program)
    except SyntaxError:
        return program
    solution = next(
        (s for s in module.body if isinstance(s, ast.FunctionDef) and s.name == "solution"),
        None,
    )
    if solution is None:
        return program
    params = {a.arg for a in solution.args.args}
    wanted = [n for n in wanted if n in params]
    body = solution.body
    first = 1 if _is_docstring(body[0]) and len(body) > 1 else 0
    if not wanted or _converts(body[first:], wanted):
        return program
    anchor = body[first]
    lines = program.splitlines(keepends=True)
    indent = lines[anchor.lineno - 1][: anchor.col_offset]
    prologue = [f"{indent}from fractions import Fraction\n"]
    prologue += [f"{indent}{name} = Fraction({name})\n" for name in wanted]
    at = anchor.lineno - 1
    return "".join([*lines[:at], *prologue, *lines[at:]])


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)


def _converts(body: list[ast.stmt], names: list[str]) -> bool:
    """Whether `body` opens with the import and one `name = Fraction(name)` per name."""
    expected = ["from fractions import Fraction", *(f"{n} = Fraction({n})" for n in names)]
    got = [ast.unparse(s) for s in body[: len(expected)]]
    return got == expected
