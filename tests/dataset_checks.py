"""Reading a build's output and re-executing its programs, shared by the end-to-end tests."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds

_REEXECUTE = (
    "import json, sys\nfrom fractions import Fraction\n"
    "out = []\n"
    "for row in json.load(sys.stdin):\n"
    "    ns = {}\n"
    "    exec(row['program'], ns)\n"
    "    v = {k: (Fraction(x) if isinstance(x, str) and '/' in x else x)\n"
    "         for k, x in json.loads(row['variables'] or '{}').items()}\n"
    "    value = ns['solution'](**v)\n"
    "    if row['exact']:\n"
    "        import sympy\n"
    "        out.append(sympy.latex(sympy.sympify(value)))\n"
    "    else:\n"
    "        out.append(str(value))\n"
    "print(json.dumps(out))\n"
)


def read_table(out: Path, table: str) -> list[dict[str, Any]]:
    """All rows of one output table ([] when the build wrote no shard for it)."""
    if not any((out / table).glob("*.parquet")):
        return []
    return ds.dataset(out / table, format="parquet").to_table().to_pylist()


def reexecute(rows: list[dict[str, Any]]) -> list[str]:
    """`solution(**variables)` of each row, run by a plain interpreter (not our sandbox)."""
    payload = json.dumps(
        [
            {"program": r["program"], "variables": r["variables"], "exact": _is_exact(r)}
            for r in rows
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-c", _REEXECUTE],
        input=payload,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout)


def _is_exact(row: dict[str, Any]) -> bool:
    return json.loads(row.get("provenance") or "{}").get("answer_type") == "exact"


def assert_answers_reproduce(rows: list[dict[str, Any]]) -> None:
    """Each row's program, re-run outside the pipeline, gives the row's `answer` (an exact
    answer: the LaTeX `sympy.latex` writes for the value, as the README says)."""
    for row, got in zip(rows, reexecute(rows), strict=True):
        if _is_exact(row):
            assert got == row["answer"], row["id"]
        else:
            assert Fraction(got).limit_denominator(10**6) == Fraction(row["answer"]), row["id"]
