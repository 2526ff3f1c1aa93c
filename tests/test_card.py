"""The dataset card: a Hub dataset repo's README.md, generated from the catalog, whose
`configs:` make `datasets.load_dataset(OUT, "sft")` (and dpo, formal, rejected) work offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml
from dataset_checks import read_table
from small_build import build_small

from mathsynth.storage.card import render_card, seeds_license
from mathsynth.storage.catalog import Catalog

CONFIGS = ["sft", "dpo", "formal", "rejected"]


def front_matter(card: str) -> dict:
    assert card.startswith("---\n")
    return yaml.safe_load(card.split("---\n")[1])


def offline_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    return env


@pytest.mark.slow
def test_default_build_is_a_dataset_repo_with_a_card(default_build: Path, tmp_path: Path) -> None:
    card = (default_build / "README.md").read_text()
    meta = front_matter(card)
    assert [c["config_name"] for c in meta["configs"]] == CONFIGS
    assert [c["data_files"] for c in meta["configs"]] == [
        [{"split": "train", "path": f"{t}/*.parquet"}] for t in CONFIGS
    ]
    assert meta["configs"][0]["default"] is True
    assert meta["license"] == "apache-2.0"  # the bundled seeds' license
    assert (default_build / "concept_graph").is_dir()  # present, and outside every glob

    code = (
        "import datasets, json, sys\n"
        "out = sys.argv[1]\n"
        "sizes = {c: len(datasets.load_dataset(out, c, split='train')) for c in sys.argv[2:]}\n"
        "sizes['default'] = len(datasets.load_dataset(out, split='train'))\n"
        "print(json.dumps(sizes))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, str(default_build), *CONFIGS],
        capture_output=True,
        text=True,
        env=offline_env(tmp_path),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    sizes = json.loads(proc.stdout.strip().splitlines()[-1])
    tables = {t: len(read_table(default_build, t)) for t in CONFIGS}
    assert sizes == {**tables, "default": tables["sft"]}

    # Every figure is the catalog's.
    con = duckdb.connect()
    by_generator = con.sql(
        f"SELECT generator, method, count(*) FROM '{default_build}/sft/*.parquet' GROUP BY ALL"
    ).fetchall()
    for generator, method, n in by_generator:
        assert f"| {generator} | {method} | {n:,} | 100.0% |" in card
    near = con.sql(
        f"SELECT detail FROM '{default_build}/rejected/*.parquet' WHERE reason = 'near_duplicate'"
    ).fetchall()
    assert near, "the default build has near duplicates (number variants of one template)"
    figures = Catalog(default_build).report("near_duplicates")
    assert figures["dropped"]["sft"] == len(near)
    assert f"| {figures['rows_checked']:,} | {figures['candidates']:,} | {len(near):,} |" in card
    kept = {r["id"] for r in read_table(default_build, "sft")}
    twins = {d.split("near duplicate of row ")[1].split(",")[0] for (d,) in near}
    assert twins <= kept  # each dropped row names a twin that is still there
    config_hash = Catalog(default_build).stored_config_hash()
    assert f"config `{config_hash}`" in card
    for paper in ("InfinityMATH", "MuggleMath", "MathScale", "RISE", "DeepSeek-Prover"):
        assert paper in card
    assert "**not** checked against any test set" in card
    assert "No LLM was used" in card


def test_card_reports_llm_usage_and_seed_licenses(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    build_small(out, **{"card.pretty_name": "Tiny math", "card.license": "cc-by-4.0"})
    catalog = Catalog(out)
    (run_id,) = catalog.query("SELECT run_id FROM builds")[0]
    config = json.loads(catalog.query("SELECT config FROM builds")[0][0])
    config["llm"].update(model="qwen-test", temperature=0.9, max_tokens=512, samples=4)
    usage = {"requests": 40, "tokens_in": 12000, "tokens_out": 3000, "cost_usd_micros": 150000}
    with catalog.connect() as con:
        con.execute(
            "UPDATE builds SET config = ?, llm = ? WHERE run_id = ?",
            [json.dumps(config), json.dumps(usage), run_id],
        )
    card = render_card(out)
    meta = front_matter(card)
    assert (meta["pretty_name"], meta["license"]) == ("Tiny math", "cc-by-4.0")
    assert [c["config_name"] for c in meta["configs"]] == ["sft", "dpo"]  # no empty globs
    sft = len(read_table(out, "sft"))
    assert "| qwen-test | 0.9 | 512 | 4 | 0.5 |" in card
    assert f"| 40 | 12,000 | 3,000 | 0.1500 | {15000 / sft:,.1f} | {0.15 / sft:.6f} |" in card
    assert "InfinityMATH" in card and "RISE" in card and "MathScale" not in card


def test_seed_license_detection(tmp_path: Path) -> None:
    assert seeds_license(None, None)[0] == "apache-2.0"
    assert seeds_license("openai/gsm8k:main", None)[0] == "mit"
    data = tmp_path / "gsm8k"
    data.mkdir()
    (data / "LICENSE").write_text("MIT License\n\nCopyright (c) 2021 OpenAI\n")
    assert seeds_license(str(data / "train.jsonl"), None) == ("mit", "LICENSE next to the seeds")
    assert seeds_license(str(tmp_path / "other.jsonl"), None)[0] == "unknown"
    assert seeds_license(str(tmp_path / "other.jsonl"), "cc-by-sa-4.0")[0] == "cc-by-sa-4.0"
