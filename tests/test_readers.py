"""Seed readers over real files: JSONL (GSM8K and MATH shapes), Parquet, saved datasets."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mathsynth.errors import InputFileError
from mathsynth.generators.seeds.readers import last_boxed, read_seeds
from mathsynth.records import Rejection
from mathsynth.seeds import Seed

GSM = {
    "question": "Tom has 3 boxes with 4 pens each. How many pens?",
    "answer": "He has 3*4 = <<3*4=12>>12 pens.\n#### 12",
}
MATH = {
    "problem": "What is $\\frac{1}{2}+\\frac{1}{4}$?",
    "solution": "We get $\\boxed{\\frac{3}{4}}$.",
    "level": "Level 1",
    "type": "Algebra",
}


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def dump(row: dict) -> bytes:
    return json.dumps(row).encode()


def test_gsm8k_rows_become_seeds_and_bad_rows_rejections(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "seeds.jsonl",
        [
            dump({**GSM, "id": "tom-1"}),
            dump({"question": "No answer here"}),
            dump({**GSM, "answer": "3*4 = <<3*4=12>>12 pens"}),
            dump({**GSM, "answer": "bad <<3*=12>>12\n#### 12"}),
            b"\xff\xfe not utf-8",
            b"{not json",
            dump(GSM),
        ],
    )
    items = list(read_seeds(path))
    assert [type(i).__name__ for i in items] == ["Seed", *["Rejection"] * 5, "Seed"]
    first, last = items[0], items[-1]
    assert isinstance(first, Seed) and isinstance(last, Seed)
    assert (first.id, first.answer, first.line, first.source) == ("tom-1", "12", 1, str(path))
    assert first.solution == GSM["answer"]
    assert last.line == 7 and last.id != "tom-1"
    reasons = [(i.reason, i.detail.split(": ")[0]) for i in items[1:-1] if isinstance(i, Rejection)]
    assert reasons == [
        ("missing_field", f"{path}:2"),
        ("missing_final_answer", f"{path}:3"),
        ("bad_annotation", f"{path}:4"),
        ("malformed_row", f"{path}:5"),
        ("malformed_row", f"{path}:6"),
    ]


def test_content_ids_are_stable_and_distinct(tmp_path: Path) -> None:
    other = {**GSM, "question": "Tom has 3 boxes with 5 pens each. How many pens?"}
    path = write_lines(tmp_path / "s.jsonl", [dump(GSM), dump(other)])
    ids_a = [s.id for s in read_seeds(path)]
    ids_b = [s.id for s in read_seeds(path)]
    assert ids_a == ids_b and ids_a[0] != ids_a[1]


def test_math_rows_use_the_last_boxed_answer(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "math.jsonl", [dump(MATH), dump({**MATH, "solution": "no box"})])
    seed, rejection = list(read_seeds(path))
    assert isinstance(seed, Seed) and seed.answer == "\\frac{3}{4}"
    assert seed.meta == {"format": "math", "level": "Level 1", "type": "Algebra"}
    assert isinstance(rejection, Rejection) and rejection.reason == "missing_boxed_answer"
    assert last_boxed("\\boxed{1} then \\boxed{x^{2}}") == "x^{2}"
    assert last_boxed("\\boxed{open") is None


def test_max_seeds_counts_seeds_only(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "s.jsonl", [b"{bad", *(dump({**GSM, "id": i}) for i in range(5))])
    items = list(read_seeds(path, max_seeds=2))
    assert [getattr(i, "id", None) for i in items if isinstance(i, Seed)] == ["0", "1"]
    assert isinstance(items[0], Rejection)


def test_parquet_file_and_directory(tmp_path: Path) -> None:
    table = pa.Table.from_pylist([{**GSM, "id": "a"}, {"question": "q", "answer": None, "id": "b"}])
    pq.write_table(table, tmp_path / "part-0.parquet")
    items = list(read_seeds(tmp_path / "part-0.parquet"))
    assert isinstance(items[0], Seed) and items[0].id == "a"
    assert isinstance(items[1], Rejection) and items[1].reason == "missing_field"
    assert [type(i) for i in read_seeds(tmp_path)] == [Seed, Rejection]


def test_saved_dataset_directory(tmp_path: Path) -> None:
    ds = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list([{**GSM, "id": "x"}, {**GSM, "id": "y"}])}
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    seeds = list(read_seeds(tmp_path / "ds"))
    assert [s.id for s in seeds] == ["x", "y"] and seeds[1].line == 2


def test_hub_id_goes_through_load_dataset(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_load_dataset(name: str, config: str | None, split: str) -> datasets.Dataset:
        calls.append((name, config, split))
        if name == "nobody/missing":
            raise FileNotFoundError("Dataset 'nobody/missing' doesn't exist on the Hub")
        return datasets.Dataset.from_list([GSM])

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    (seed,) = read_seeds("openai/gsm8k:main")
    assert isinstance(seed, Seed) and seed.source == "openai/gsm8k:main"
    assert calls == [("openai/gsm8k", "main", "train")]
    with pytest.raises(InputFileError, match="nobody/missing: cannot load dataset"):
        list(read_seeds("nobody/missing"))


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"a,b\n1,2\n", "not a JSONL file"), (b"", "empty file"), (b"\x89PNG\x00\xff", "JSONL")],
)
def test_unreadable_files_are_fatal(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "seeds.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputFileError, match=message):
        list(read_seeds(path))


def test_missing_file_is_fatal(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        list(read_seeds(tmp_path / "nope.jsonl"))
    with pytest.raises(InputFileError, match="not a readable Parquet"):
        (tmp_path / "x.parquet").write_bytes(b"not parquet")
        list(read_seeds(tmp_path / "x.parquet"))
