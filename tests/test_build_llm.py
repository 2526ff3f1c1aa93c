"""Whole builds against a scripted OpenAI-compatible server (real sockets, the real `openai`
client, real sandbox, Prefect and Parquet), with faults injected; and the CLI's bad-input lines.

The script (tests/llm_scripts.py) answers every prompt kind correctly except where a test
scripts a fault (429, 500, malformed body, a reply slower than the timeout, truncated or
empty content) or a wrong answer (paths that disagree, a program that contradicts its own
solution, a self-edit that admits its error, a poor grade, a wrong decoupling program).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from console import mathsynth
from dataset_checks import assert_answers_reproduce, read_table
from llm_mock_server import MockOpenAIServer
from llm_scripts import ScriptedLLM, request_key

from mathsynth.config import BuildConfig, load_config
from mathsynth.flows.build import run_build

pytestmark = pytest.mark.usefixtures("prefect_harness")

SENTINEL = "sk-mathsynth-SENTINEL-5e1f0c"
MODEL = "mock"
ALL_GENERATORS = "infinitymath,mugglemath,mathscale,rise,formalize"
# The i-th distinct prompt of a kind gets the i-th scenario; the rest are answered normally.
SCRIPT = {
    "augment": ["rate_limited", "server_error", "truncated"],
    "solve": ["minority", "no_majority", "program_disagrees"],
    "generate": ["malformed", "slow", "program_disagrees"],
    "self_edit": ["admits_error"],
    "translate": ["empty"],
    "score": ["poor"],
}
TIMEOUT_S = 1.5
SLOW_S = 4.0


def llm_config(out: Path, base_url: str, **overrides: Any) -> BuildConfig:
    values: dict[str, Any] = {
        "out": out,
        "max_seeds": 3,
        "variants": 2,
        "mugglemath_variants": 2,
        "mathscale_samples": 4,
        "generators": ALL_GENERATORS,
        "llm.base_url": base_url,
        "llm.model": MODEL,
        "llm.timeout_s": TIMEOUT_S,
        "llm.max_retries": 1,
        "llm.api_key": SENTINEL,
        "llm.prices": {MODEL: {"input_per_mtok": 2.0, "output_per_mtok": 8.0}},
        **overrides,
    }
    return load_config(**values)


def ids(out: Path) -> dict[str, list[str]]:
    return {t: sorted(r["id"] for r in read_table(out, t)) for t in ("sft", "dpo", "formal")}


def assert_all_sft_reexecute(rows: list[dict[str, Any]]) -> None:
    assert rows
    for row in rows:
        assert row["verification"]["status"] == "verified", row["id"]
        assert row["verification"]["checker"] in ("exec", "agreement+exec"), row["id"]
        assert row["program"], row["id"]
    assert_answers_reproduce(rows)


def rejections(out: Path) -> list[dict[str, Any]]:
    rows = read_table(out, "rejected")
    for row in rows:
        row["record"] = json.loads(row["record"])
    return rows


class LogCapture(logging.Handler):
    """Every log line of the build, formatted with tracebacks, from root and Prefect's
    loggers (Prefect's do not propagate to root)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def __enter__(self) -> LogCapture:
        for name in ("", "prefect", "mathsynth"):
            logging.getLogger(name).addHandler(self)
        logging.getLogger("mathsynth").setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in ("", "prefect", "mathsynth"):
            logging.getLogger(name).removeHandler(self)


@pytest.fixture(scope="module")
def faulty_build(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One build with every generator and the fault script, then a rerun of it."""
    out = tmp_path_factory.mktemp("llm") / "ds"
    script = ScriptedLLM(SCRIPT, slow_s=SLOW_S)
    with MockOpenAIServer(script, models=(MODEL,)) as srv, LogCapture() as logs:
        config = llm_config(out, srv.base_url)
        report = run_build(config)
        first = {
            "ids": ids(out),
            "requests": len(srv.requests),
            "probes": len(srv.probes),
            "answered": set(script.answered),
            "report": report,
        }
        rerun = run_build(config)
        yield {
            "out": out,
            "srv": srv,
            "script": script,
            "config": config,
            "first": first,
            "rerun": rerun,
            "rerun_requests": len(srv.requests) - first["requests"],
            "rerun_ids": ids(out),
            "logs": logs,
        }


def test_build_finishes_with_faults_retried_or_rejected(faulty_build: dict[str, Any]) -> None:
    out, script, srv = faulty_build["out"], faulty_build["script"], faulty_build["srv"]
    report = faulty_build["first"]["report"]
    totals = report["totals"]
    assert totals["sft"] > 0 and totals["dpo"] > 0 and totals["formal"] > 0
    # Every scripted fault was really served.
    assert script.served == SCRIPT

    # Transient faults were retried and then answered: the prompt went out twice (more when
    # another task sends the very same body, as a MathScale walk drawn twice does: it asks
    # for a new sample of the same prompt, and the mock tells requests apart by body only).
    sent = [request_key(r) for r in srv.requests[: faulty_build["first"]["requests"]]]
    for scenario in ("rate_limited", "server_error", "malformed"):
        (key,) = [k for k, s in script.assigned.items() if s == scenario]
        assert sent.count(key) >= 2, scenario
        assert key in faulty_build["first"]["answered"], scenario
    (slow,) = [k for k, s in script.assigned.items() if s == "slow"]
    assert sent.count(slow) == 2  # the first try and one retry, both past the timeout
    assert report["llm"]["retries"] >= 4

    found: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rejections(out):
        found.setdefault((row["stage"], row["reason"]), []).append(row)
    expected = {
        ("mugglemath", "llm_truncated"),
        ("mugglemath", "no_majority"),
        ("mugglemath", "program_disagrees"),
        ("mathscale", "llm_timeout"),
        ("mathscale", "program_disagrees"),
        ("rise", "admits_error"),
        ("formalize_llm", "llm_empty"),
        ("formalize_llm", "low_score"),
    }
    assert expected <= set(found), sorted(set(found))
    # Failed LLM calls keep the raw reply (or None when nothing came back in time).
    (truncated,) = found[("mugglemath", "llm_truncated")]
    assert "step by step. First" in truncated["record"]["raw_reply"]
    (timeout,) = found[("mathscale", "llm_timeout")]
    assert "raw_reply" in timeout["record"] and "1.5s" in timeout["detail"]
    (admits,) = found[("rise", "admits_error")]
    assert "deliberate mistake" in admits["record"]["raw_reply"]
    (empty,) = found[("formalize_llm", "llm_empty")]
    assert empty["record"]["raw_reply"] == ""
    # Wrong answers are rejected with what the model wrote.
    (split,) = found[("mugglemath", "no_majority")]
    assert "votes 1/4" in split["detail"] and len(split["record"]["raw_replies"]) == 4
    (contradicts,) = found[("mugglemath", "program_disagrees")]
    assert "+ 5" in contradicts["record"]["raw_replies"][0]
    (disagree,) = found[("mathscale", "program_disagrees")]
    assert "program returns" in disagree["detail"]
    assert "return packed - " in disagree["record"]["raw_reply"]


def test_no_row_is_accepted_without_passing_its_check(faulty_build: dict[str, Any]) -> None:
    out = faulty_build["out"]
    sft = read_table(out, "sft")
    assert {r["generator"] for r in sft} == {"infinitymath", "mugglemath", "mathscale"}
    assert_all_sft_reexecute(sft)
    llm_rows = [r for r in sft if r["generator"] in ("mugglemath", "mathscale")]
    assert all(r["verification"]["checker"] == "agreement+exec" for r in llm_rows)
    # The accepted MuggleMath row with a dissenting path says so in its verification.
    assert any("votes 3/4" in r["verification"]["detail"] for r in llm_rows)
    for row in read_table(out, "dpo"):
        assert row["verification"]["status"] == "verified", row["id"]
        assert row["chosen"] != row["rejected"]
    formal = read_table(out, "formal")
    # No Lean backend is configured: nothing may claim to compile or be proved.
    assert formal and {r["lean_status"] for r in formal} == {"unchecked"}


def test_llm_usage_is_accounted(faulty_build: dict[str, Any]) -> None:
    out = faulty_build["out"]
    for row in read_table(out, "sft"):
        prov = json.loads(row["provenance"])
        if row["generator"] in ("mugglemath", "mathscale"):
            assert prov["model"] == MODEL
            assert prov["tokens_in"] > 0 and prov["tokens_out"] > 0 and prov["cost_usd"] > 0
            assert row["tokens_in"] == prov["tokens_in"]
            assert prov["request_hashes"]
    self_edits = [
        json.loads(r["provenance"])
        for r in read_table(out, "dpo")
        if r["error_type"] == "llm_self_edit"
    ]
    assert self_edits and all(p["model"] == MODEL and p["cost_usd"] > 0 for p in self_edits)

    con = duckdb.connect(str(out / "catalog.duckdb"), read_only=True)
    try:
        (llm,) = con.execute("SELECT llm FROM builds ORDER BY started_at LIMIT 1").fetchone()
    finally:
        con.close()
    llm = json.loads(llm)
    assert llm["tokens_in"] > 0 and llm["tokens_out"] > 0 and llm["cost_usd_micros"] > 0
    # Every request the server saw, and the one structured-output probe it answered itself.
    assert faulty_build["first"]["probes"] == 1
    assert llm["requests"] == faulty_build["first"]["requests"] + 1

    from typer.testing import CliRunner

    from mathsynth.flows.cli import app
    from mathsynth.storage.stats import dataset_stats

    acceptance = {row["generator"]: row for row in dataset_stats(out)["acceptance"]}
    for generator in ("mugglemath", "mathscale"):
        assert acceptance[generator]["cost_per_accepted"] > 0, generator
    shown = CliRunner().invoke(app, ["stats", str(out)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0, shown.output
    line = next(x for x in shown.output.splitlines() if "mugglemath" in x and "%" in x)
    assert f"{acceptance['mugglemath']['cost_per_accepted']:.6f}" in line
    # The whole-dataset figure counts every paid request, preparation included.
    overall = dataset_stats(out)["llm"]
    assert overall["cost_usd"] == pytest.approx(llm["cost_usd_micros"] / 1e6)
    assert f"{overall['cost_per_accepted']:.6f} USD per accepted sft row" in shown.output


def test_api_key_is_sent_but_never_stored_or_logged(faulty_build: dict[str, Any]) -> None:
    srv, out = faulty_build["srv"], faulty_build["out"]
    assert all(h.get("Authorization") == f"Bearer {SENTINEL}" for h in srv.headers)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert any(p.name == "llm_cache.sqlite" for p in files)
    for path in files:
        assert SENTINEL.encode() not in path.read_bytes(), path
    logs = faulty_build["logs"].lines
    assert logs  # the capture did see the build's logging
    assert not [line for line in logs if SENTINEL in line]


def test_rerun_sends_no_request_and_changes_nothing(faulty_build: dict[str, Any]) -> None:
    assert faulty_build["rerun_requests"] == 0
    assert len(faulty_build["srv"].probes) == 1  # the probe's answer is remembered too
    assert faulty_build["rerun"]["batches_skipped"] == faulty_build["rerun"]["batches"]
    assert faulty_build["rerun_ids"] == faulty_build["first"]["ids"]


def test_overwrite_with_new_config_reuses_the_request_cache(
    faulty_build: dict[str, Any],
) -> None:
    out, srv, script = faulty_build["out"], faulty_build["srv"], faulty_build["script"]
    before = len(srv.requests)
    answered = set(script.answered)
    config = llm_config(out, srv.base_url, variants=3)
    report = run_build(config, overwrite=True)
    new = srv.requests[before:]
    assert report["llm"]["cache_hits"] > 0
    assert new  # the third variant per seed is new work...
    repeated = [r for r in new if request_key(r) in answered]
    assert repeated == []  # ...but nothing answered before was asked again
    assert len(read_table(out, "sft")) > len(faulty_build["first"]["ids"]["sft"])


def test_repeated_concept_walks_make_different_problems(tmp_path: Path) -> None:
    script = ScriptedLLM()
    with MockOpenAIServer(script, models=(MODEL,)) as srv:
        # Batches of 3 one after the other: later batches meet earlier batches' cached replies.
        config = llm_config(
            tmp_path / "ds",
            srv.base_url,
            generators="mathscale",
            mathscale_samples=12,
            batch_size=3,
            max_workers=1,
        )
        run_build(config)
    generate = [request_key(r) for r in srv.requests if "Write a new math word" in str(r)]
    assert len(generate) == 12 and len(set(generate)) < 12  # a small graph repeats walks
    sft = read_table(tmp_path / "ds", "sft")
    assert len(sft) == 12
    assert len({r["question"] for r in sft}) == 12  # ...but each walk index is its own sample


GSM8K_SEEDS = [
    {
        "id": "natalia",
        "question": "Natalia sold clips to 48 of her friends in April, and then she sold half "
        "as many clips in May. How many clips did Natalia sell altogether in April and May?",
        "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
        "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72",
    },
    {
        "id": "pens",
        "question": "Mia packs 6 boxes with 7 pens in each box. How many pens does Mia pack?",
        "answer": "She packs six boxes of seven pens, forty-two pens in all.\n#### 42",
    },
    {
        "id": "farm",
        "question": "A farm has 5 rows of 9 trees and 3 rows of 4 bushes. "
        "How many plants are on the farm?",
        "answer": "Five rows of nine is forty-five, plus twelve bushes is fifty-seven.\n#### 57",
    },
]


def test_dataset_seeds_fall_back_to_llm_decoupling(tmp_path: Path) -> None:
    seeds = tmp_path / "gsm8k.jsonl"
    seeds.write_text("".join(json.dumps(s) + "\n" for s in GSM8K_SEEDS))
    script = ScriptedLLM(
        {"decouple": {"Mia packs": "wrong_then_fixed", "A farm has": "always_wrong"}},
        formulas={"Mia packs": "v1 * v2", "A farm has": "v1 * v2 + v3 * v4"},
    )
    out = tmp_path / "ds"
    with MockOpenAIServer(script, models=(MODEL,)) as srv:
        config = llm_config(out, srv.base_url, seeds=str(seeds), generators="infinitymath")
        report = run_build(config)
        # Only the two seeds without calculator annotations went to the model, twice each.
        assert script.kinds == {"decouple": 4}
        sft = read_table(out, "sft")
        assert {r["seed_id"] for r in sft} == {"natalia", "pens"}
        assert report["totals"]["sft"] == len(sft) == 2 * 2
        assert_all_sft_reexecute(sft)
        # Rows of the seed the model templated say so: model, prompt hashes, both rounds.
        from mathsynth.generators.llm.prompts import PromptLibrary

        library = PromptLibrary()
        for row in sft:
            decoupling = json.loads(row["provenance"]).get("decoupling")
            if row["seed_id"] == "natalia":  # decoupled offline, from its annotations
                assert decoupling is None
                continue
            assert decoupling["model"] == MODEL and len(decoupling["request_hashes"]) == 2
            assert decoupling["prompts"]["infinitymath.decouple"] == (
                library.get("infinitymath.decouple").hash
            )
            assert "infinitymath.repair" in decoupling["prompts"]
        (rejected,) = [r for r in rejections(out) if r["record"]["seed_id"] != "pens"]
        assert rejected["record"]["seed_id"] == "farm"
        assert (rejected["stage"], rejected["reason"]) == (
            "infinitymath.llm_decouple",
            "answer_mismatch",
        )
        assert rejected["detail"].startswith("after one repair round")
        assert "v1 + v2 + v3 + v4" in rejected["record"]["raw_reply"]
        assert rejected["record"]["first_reply"]
        # The repaired seed was accepted only after the repair round saw its failure.
        repair = [r for r in srv.requests if len(r["messages"]) > 2 and "Mia" in str(r)]
        assert len(repair) == 1 and "gold answer is 42" in repair[0]["messages"][-1]["content"]
        first_try = repair[0]["messages"][2]["content"]
        assert "v1 + v2" in first_try  # the wrong program the repair round was shown

        before = len(srv.requests)
        run_build(config)
        assert len(srv.requests) == before  # seed decoupling is served from the cache too


# -- bad input through the CLI ----------------------------------------------------------------


def cli(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str, float]:
    start = time.perf_counter()
    proc = mathsynth("build", *args, env=env, timeout=timeout)
    return proc.returncode, proc.stderr, time.perf_counter() - start


def error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


class _HangUp:
    """A port that accepts every connection and closes it at once, counting them: an endpoint
    that is there but never answers."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.connections = 0
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


def test_unreachable_endpoint_fails_fast_with_one_line(
    prefect_env: dict[str, str], tmp_path: Path
) -> None:
    # "Fast" without a clock: the build gives up after the preflight's few attempts
    # (client._PREFLIGHT_RETRIES + 1), not after every request's retry schedule.
    from mathsynth.generators.llm.client import _PREFLIGHT_RETRIES

    endpoint = _HangUp()
    try:
        rc, stderr, _ = cli(
            prefect_env,
            *("--out", str(tmp_path / "ds"), "--max-seeds", "3", "--generators", "mugglemath"),
            *("--llm-base-url", endpoint.url, "--llm-model", MODEL),
        )
    finally:
        endpoint.sock.close()
    assert rc == 2, stderr
    line = error_line(stderr)
    assert "cannot reach the LLM endpoint" in line and endpoint.url in line
    assert "--llm-base-url" in line
    # aiohttp resends a request once when a fresh connection is dropped: two per attempt
    assert 1 <= endpoint.connections <= 2 * (_PREFLIGHT_RETRIES + 1)


def test_unknown_model_is_named(prefect_env: dict[str, str], tmp_path: Path) -> None:
    with MockOpenAIServer(ScriptedLLM(), models=(MODEL,)) as srv:
        rc, stderr, _ = cli(
            prefect_env,
            *("--out", str(tmp_path / "ds"), "--max-seeds", "1", "--generators", "mugglemath"),
            *("--llm-base-url", srv.base_url, "--llm-model", "no-such-model"),
        )
    assert rc == 2, stderr
    line = error_line(stderr)
    assert "unknown model 'no-such-model'" in line and MODEL in line


@pytest.mark.parametrize(
    ("flags", "missing"),
    [
        (("--llm-model", MODEL), "--llm-base-url"),
        (("--llm-base-url", "http://127.0.0.1:1/v1"), "--llm-model"),
    ],
)
def test_half_configured_endpoint_says_what_to_set(
    prefect_env: dict[str, str], tmp_path: Path, flags: tuple[str, str], missing: str
) -> None:
    rc, stderr, _ = cli(prefect_env, "--out", str(tmp_path / "ds"), *flags)
    assert rc == 2, stderr
    assert f"set {missing}" in error_line(stderr)
    assert not (tmp_path / "ds").exists()
