"""`mathsynth sandbox run FILE.jsonl`: one output row per input row, same order; bad input is
a one-line error naming the file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from console import mathsynth

ROWS = [
    {"id": 1, "code": "def solution():\n    return 2 ** 10"},
    {
        "id": "frac",
        "code": "from fractions import Fraction\ndef solution():\n    return Fraction(1, 3)",
    },
    {"id": "print", "code": "print('hello')"},
    {"id": "err", "code": "1/0"},
    {"id": "attack", "code": "import os\nos._exit(1)"},
    {"id": "loop", "code": "while True:\n    pass"},
    {"id": "after", "code": "def solution(a):\n    return a + 1", "kwargs": {"a": 1}},
]


def test_run_writes_one_row_per_input_in_order(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "out.jsonl"
    proc = mathsynth(
        "sandbox", "run", str(src), "--out", str(out), "--timeout", "1", "--workers", "2"
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [r["id"] for r in ROWS]
    assert all(set(r) == {"id", "status", "result", "stdout", "error"} for r in rows)
    by_id = {r["id"]: r for r in rows}
    assert by_id[1]["result"] == 1024
    assert by_id["frac"]["result"] == "1/3"
    assert by_id["print"]["stdout"] == "hello\n"
    assert by_id["err"]["status"] == "error"
    assert by_id["err"]["error"] == "ZeroDivisionError: division by zero"
    assert by_id["attack"]["status"] == "killed"
    assert by_id["loop"]["status"] == "timeout"
    assert by_id["after"] == {
        "id": "after",
        "status": "ok",
        "result": 2,
        "stdout": "",
        "error": None,
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ('{"id": 1, "code": "pass"}\n{"id": 2, "code": \n', ":2: not valid JSON"),
        ('{"id": 1, "code": "pass"}\n{"code": "pass"}\n', ':2: row needs an "id"'),
        ('{"id": 1}\n', ':1: row needs a "code" string'),
        ('{"id": 1, "code": "pass", "kwargs": [1]}\n', ':1: "kwargs" must be a JSON object'),
    ],
)
def test_bad_input_is_a_one_line_error(tmp_path: Path, content: str | None, message: str):
    src = tmp_path / "bad.jsonl"
    if content is not None:
        src.write_text(content)
    proc = mathsynth("sandbox", "run", str(src))
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert str(src) in proc.stderr and message in proc.stderr
