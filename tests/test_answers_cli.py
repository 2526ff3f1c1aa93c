"""`mathsynth verify answers FILE.jsonl` through the typer sub-app."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mathsynth.errors import InputFileError
from mathsynth.flows.verify_cmd import verify_app

runner = CliRunner()


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_verdicts_to_stdout_in_order(tmp_path: Path) -> None:
    src = _write(
        tmp_path / "pairs.jsonl",
        [
            {"id": "a", "gold": "3/4", "pred": "0.75"},
            {"id": "b", "gold": 18, "pred": "\\boxed{19}"},
            {"id": "c", "gold": "x^2+2x+1", "pred": "(x+1)^2"},
        ],
    )
    result = runner.invoke(verify_app, ["answers", str(src), "--workers", "1"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["id"], r["verdict"]) for r in rows] == [
        ("a", "correct"),
        ("b", "incorrect"),
        ("c", "correct"),
    ]
    assert all(r["detail"] for r in rows)


def test_out_file(tmp_path: Path) -> None:
    src = _write(tmp_path / "pairs.jsonl", [{"id": 1, "gold": "25%", "pred": "0.25"}])
    out = tmp_path / "verdicts.jsonl"
    result = runner.invoke(verify_app, ["answers", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == {
        "id": 1,
        "verdict": "correct",
        "detail": "exact: 25 == 1/4",
    }


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"id": 1, "gold": "1", "pred": "1"}\n{"id": 2, "gold": "1"}\n',
            ":2: missing field 'pred'",
        ),
        ('{"id": 1, "gold": "1", "pred": "1"}\n{oops\n', ":2: not valid JSON"),
        ('{"id": 1, "gold": [1], "pred": "1"}\n', ":1: field 'gold' must be a string or number"),
    ],
)
def test_bad_input_names_file_and_line(tmp_path: Path, content: str, message: str) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text(content, encoding="utf-8")
    result = runner.invoke(verify_app, ["answers", str(src)])
    assert isinstance(result.exception, InputFileError)
    assert str(result.exception).startswith(f"{src}{message}")


def test_missing_file(tmp_path: Path) -> None:
    result = runner.invoke(verify_app, ["answers", str(tmp_path / "nope.jsonl")])
    assert isinstance(result.exception, InputFileError)
    assert "no such file" in str(result.exception)
