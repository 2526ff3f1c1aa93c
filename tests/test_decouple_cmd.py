"""`mathsynth decouple` end to end, as a real subprocess."""

from __future__ import annotations

import json
from pathlib import Path

from console import mathsynth as run_mathsynth

ROOT = Path(__file__).resolve().parents[1]


def mathsynth(*args: str):
    return run_mathsynth(*args, cwd=ROOT)


def test_one_row_per_input_row(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    rows = [
        {
            "id": "pens",
            "question": "Tom has 3 boxes with 4 pens each. How many pens?",
            "answer": "He has 3*4 = <<3*4=12>>12 pens.\n#### 12",
        },
        {
            "id": "joy",
            "question": "Joy reads 8 pages in 20 minutes. How many in an hour?",
            "answer": "That is 3 sets.\nShe reads 8*3 = <<8*3=24>>24 pages.\n#### 24",
        },
        {"id": "broken", "question": "No answer"},
    ]
    seeds.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "templates.jsonl"
    proc = mathsynth("decouple", str(seeds), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "decoupled 1 of 3 seeds" in proc.stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["seed_id"], r["decoupled"]) for r in got] == [
        ("pens", True),
        ("joy", False),
        ("broken", False),
    ]
    assert got[0]["template"] == "Tom has {boxes} boxes with {pens} pens each. How many pens?"
    assert got[0]["program"].startswith("def solution(boxes, pens):")
    assert set(got[0]["variables"]) == {"boxes", "pens"} and got[0]["constraints"]
    assert got[1]["reason"] == "unexplained_number"
    assert got[2]["reason"] == "missing_field" and f"{seeds}:3:" in got[2]["detail"]


def test_bad_input_is_one_line_and_non_zero(tmp_path: Path) -> None:
    for path, message in [
        (tmp_path / "missing.jsonl", "no such file"),
        (tmp_path / "table.csv", "not a JSONL file"),
    ]:
        if path.suffix == ".csv":
            path.write_text("question,answer\n1,2\n")
        out = tmp_path / "out.jsonl"
        proc = mathsynth("decouple", str(path), "--out", str(out))
        assert proc.returncode != 0
        assert message in proc.stderr and str(path) in proc.stderr
        assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
        assert not out.exists()
