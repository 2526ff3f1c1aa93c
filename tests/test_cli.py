"""The `mathsynth` command line on bad input: one line on stderr, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
from console import assert_one_line_error, mathsynth


def test_missing_seeds_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = mathsynth("build", "--seeds", str(tmp_path / "nope.jsonl"), "--out", str(out))
    assert_one_line_error(proc, "nope.jsonl", "no such file")
    assert not out.exists()


def test_seeds_file_that_is_not_jsonl(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("this is,a csv\n1,2\n")
    out = tmp_path / "out"
    proc = mathsynth("build", "--seeds", str(seeds), "--out", str(out))
    assert_one_line_error(proc, "seeds.jsonl")
    assert not out.exists()


def test_seed_rows_lacking_fields(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"question": "How many?"}\n{"text": "x"}\n')
    out = tmp_path / "out"
    proc = mathsynth("build", "--seeds", str(seeds), "--out", str(out))
    assert_one_line_error(proc, "seeds.jsonl:1", "no usable seed")
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["build", "--generators", "infinitymath,nope"], "unknown generator 'nope'"),
        (["build", "--variants", "0"], "variants"),
        (["stats", "/definitely/not/here"], "not a mathsynth dataset"),
        (["sandbox", "run", "/definitely/not/here.jsonl"], "no such file"),
        (["verify", "answers", "/definitely/not/here.jsonl"], "no such file"),
        (["decouple", "/definitely/not/here.jsonl"], "no such file"),
    ],
)
def test_bad_arguments(args: list[str], needle: str) -> None:
    assert_one_line_error(mathsynth(*args), needle)


def test_bad_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("variants: [\n")
    assert_one_line_error(mathsynth("build", "--config", str(cfg)), "c.yaml", "YAML")


def test_existing_non_dataset_dir_is_untouched(tmp_path: Path) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = mathsynth("build", "--out", str(out), "--max-seeds", "1", "--variants", "1")
    assert_one_line_error(proc, "not empty")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


@pytest.mark.usefixtures("prefect_harness")
def test_stats_prints_counts_and_acceptance(tmp_path: Path) -> None:
    from mathsynth.config import load_config
    from mathsynth.flows.build import run_build

    out = tmp_path / "ds"
    run_build(load_config(out=out, max_seeds=2, variants=4, generators="infinitymath,rise"))
    proc = mathsynth("stats", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "infinitymath" in proc.stdout and "instantiate" in proc.stdout
    assert "verified" in proc.stdout and "100.0%" in proc.stdout
    assert "dpo" in proc.stdout
