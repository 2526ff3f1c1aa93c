"""The build report: `mathsynth report OUT` (an offline HTML page with charts), the same as
Prefect artifacts, mathsynth's log lines in the flow runs' logs, and `mathsynth stats --json`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from console import assert_one_line_error, mathsynth
from dataset_checks import read_table

from mathsynth.config import load_config
from mathsynth.flows.build import run_build
from mathsynth.records import Rejection
from mathsynth.storage.shards import write_shard

pytestmark = pytest.mark.usefixtures("prefect_harness")

SEEDS = [
    {
        "id": "bakery-1",
        "question": "A bakery sells 18 muffins each day. How many muffins does it sell in 5 days?",
        "answer": "It sells 18 * 5 = <<18*5=90>>90 muffins.\n#### 90",
    },
    {
        "id": "books-1",
        "question": "Lena has 40 books. She gives away 15 books. How many books are left?",
        "answer": "She has 40 - 15 = <<40-15=25>>25 books left.\n#### 25",
    },
    {"id": "broken-1", "question": "How many pens are there?"},
]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("report")
    seeds = tmp / "seeds.jsonl"
    seeds.write_text("".join(json.dumps(row) + "\n" for row in SEEDS))
    out = tmp / "ds"
    config = load_config(
        seeds=str(seeds), out=out, variants=6, batch_size=4, generators="infinitymath,rise"
    )
    report = run_build(config)
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()
    return {"out": out, "report": report, "tmp": tmp}


def _run_id(out: Path) -> str:
    import duckdb

    con = duckdb.connect(str(out / "catalog.duckdb"), read_only=True)
    (run_id,) = con.execute("SELECT run_id FROM builds").fetchone()
    con.close()
    return run_id


def test_log_lines_reach_the_flow_runs(built: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
        LogFilter,
        LogFilterFlowRunId,
    )

    run_id = _run_id(built["out"])
    with get_client(sync_client=True) as client:
        subflows = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run_id])
            )
        )
        ids = [run_id, *(str(f.id) for f in subflows)]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)))
    assert [f.name for f in subflows] == ["infinitymath"]
    own = [log for log in logs if str(log.flow_run_id) == run_id]
    sub = [log for log in logs if str(log.flow_run_id) == str(subflows[0].id)]

    def texts(rows: list[Any]) -> str:
        return "\n".join(f"{r.level} {r.message}" for r in rows)

    # The build's own run: plan, outcome, rejection summary, the warning about a bad seed.
    assert re.search(r"\d+ batches planned", texts(own)), texts(own)
    assert re.search(r"build finished in [\d.]+ s: 12 sft, 12 dpo", texts(own)), texts(own)
    assert "rejections by stage and reason: read_seeds:" in texts(own)
    warning = [r for r in own if r.level == 30 and "could not be read" in r.message]
    assert warning and "seeds.jsonl:3" in warning[0].message
    # The generator's subflow: every batch started and finished, under its task run.
    batches = [b for b in built["report"]["generators"] if b["generator"] == "infinitymath"][0]
    started = [r for r in sub if re.match(r"batch \d{5} \(infinitymath\) started", r.message)]
    finished = [r for r in sub if re.match(r"batch \d{5} \(infinitymath\) finished", r.message)]
    assert len(started) == len(finished) == batches["batches"] == 2
    assert all(r.task_run_id is not None for r in started)
    assert sum(int(re.search(r": (\d+) sft", r.message).group(1)) for r in finished) == 12
    assert re.search(r"infinitymath: 2 batches run \(0 already done\), 12 sft rows", texts(sub))


def test_report_artifacts_in_the_ui(built: dict[str, Any]) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    run_id = _run_id(built["out"])
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
        )
    by_key = {a.key: a for a in artifacts}
    for key in ("report-funnel", "report-rejections", "report-batches", "report-answer-types"):
        assert by_key[key].type == "table", key
    for key in ("report-chart-funnel", "report-chart-rejections", "report-chart-batches"):
        assert by_key[key].type == "image", key
        assert by_key[key].data.startswith("data:image/png;base64,")
    details = by_key["build-report-details"]
    assert details.type == "markdown" and "## Yield funnel" in details.data
    funnel = by_key["report-funnel"].data
    funnel = json.loads(funnel) if isinstance(funnel, str) else funnel
    (row,) = [r for r in funnel if r["generator"] == "infinitymath"]
    assert row["decontaminated"] == 12 and row["seeds"] == 2


def test_report_page_and_stats_json(built: dict[str, Any]) -> None:
    out = built["out"]
    proc = mathsynth("report", str(out))
    assert proc.returncode == 0, proc.stderr
    page = (out / "report.html").read_text()
    for title in (
        "Yield funnel per generator and method",
        "Rejection reasons",
        "Topic coverage",
        "Difficulty coverage",
        "Answer types",
        "Tokens and cost per accepted row",
        "Batch timings",
    ):
        assert title in page
    assert page.count('src="data:image/png;base64,') >= 5
    # Offline: nothing is fetched from elsewhere.
    assert not re.search(r"<(script|link)\b", page)
    assert not re.search(r"(src|href)=\"https?:", page)

    other = built["tmp"] / "elsewhere" / "r.html"
    assert mathsynth("report", str(out), "--output", str(other)).returncode == 0
    assert other.exists()

    stats = mathsynth("stats", str(out), "--json")
    assert stats.returncode == 0, stats.stderr
    data = json.loads(stats.stdout)
    assert data["tables"] == {
        t: len(read_table(out, t)) for t in ("sft", "dpo", "formal", "rejected")
    }
    assert {
        "generator": "infinitymath",
        "method": "instantiate",
        "status": "verified",
        "rows": 12,
    } in data["sft"]
    assert any(r["stage"] == "read_seeds" for r in data["rejected"])

    assert_one_line_error(mathsynth("report", str(built["tmp"])), "not a mathsynth dataset")
    assert_one_line_error(
        mathsynth("stats", str(built["tmp"]), "--json"), "not a mathsynth dataset"
    )


def test_funnel_reads_rejection_reasons_generically(built: dict[str, Any], tmp_path: Path) -> None:
    """A step the pipeline does not know yet (decontamination's `contaminated` reason) lands
    between deduplicated and decontaminated; a duplicate between verified and deduplicated."""
    import shutil

    from mathsynth.flows.report_cmd import build_report_data

    out = tmp_path / "copy"
    shutil.copytree(built["out"], out)
    before = {(r["generator"], r["method"]): r for r in build_report_data(out)["funnel"]}[
        ("infinitymath", "instantiate")
    ]
    import pyarrow.parquet as pq

    shard = out / "rejected" / "part-00000.parquet"
    existing = pq.read_table(shard).to_pylist() if shard.exists() else []
    record = {"generator": "infinitymath", "method": "instantiate", "seed_id": "bakery-1"}
    added = [
        Rejection("decontaminate", "contaminated", "13-gram overlap with gsm8k-test/7", record),
        Rejection("decontaminate", "contaminated", "numbers-masked match", {**record, "q": 2}),
        Rejection("dedup", "near_duplicate", "MinHash 0.93", {**record, "q": 3}),
    ]
    write_shard(out, "rejected", 0, existing + [r.to_row() for r in added])
    after = {(r["generator"], r["method"]): r for r in build_report_data(out)["funnel"]}[
        ("infinitymath", "instantiate")
    ]
    assert after["decontaminated"] == before["decontaminated"]
    assert after["deduplicated"] == before["deduplicated"] + 2
    assert after["verified"] == before["verified"] + 3
    assert after["candidates"] == before["candidates"] + 3
    reasons = {(r["stage"], r["reason"]): r["rows"] for r in build_report_data(out)["rejections"]}
    assert reasons[("decontaminate", "contaminated")] == 2
