"""Whole LLM builds with the scripted model answering the way the models users run answer:
plainly, as a reasoning model (a draft with other numbers in a <think> block, or in the
`reasoning_content` field), through the Batch API, and with malformed JSON that structured
outputs prevent. The LLM-made rows must match the plain build's within 5%.

The builds are small (bundled seeds, 3 seeds, every generator) and share one module fixture.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dataset_checks import read_table
from llm_mock_server import MockOpenAIServer
from llm_scripts import ScriptedLLM

from mathsynth.config import load_config
from mathsynth.flows.build import run_build
from mathsynth.generators.llm.prompts import PromptLibrary
from mathsynth.storage.catalog import Catalog

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

MODEL = "mock"
PRICES = {MODEL: {"input_per_mtok": 2.0, "output_per_mtok": 8.0}}
# Rejection reasons of a JSON reply the parser could not use (augment, concepts, score).
JSON_FAILURES = ("parse_malformed_json", "parse_no_json", "parse_bad_fields", "parse_no_score")
JSON_KINDS = ("augment", "concepts", "score")
NOISE = 0.3

# name -> (ScriptedLLM keyword arguments, config overrides)
BUILDS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "plain": ({}, {}),
    "think": ({"style": "think"}, {}),
    "reasoning_content": ({"style": "reasoning_content"}, {"llm.keep_reasoning": True}),
    # The control: think blocks the client is not told about (another tag name) reach the
    # parsers, as before this layer knew about reasoning models.
    "think_unstripped": ({"style": "think"}, {"llm.think_tags": ["reflection"]}),
    "batch": ({}, {"llm.backend": "batch", "llm.batch_poll_s": 0.02}),
    "json_noise_structured": ({"json_noise": NOISE}, {}),
    "json_noise_plain": ({"json_noise": NOISE}, {"llm.structured_output": "off"}),
}


def config(out: Path, base_url: str, **overrides: Any) -> Any:
    return load_config(
        out=out,
        max_seeds=3,
        variants=2,
        mugglemath_variants=2,
        mathscale_samples=4,
        generators="infinitymath,mugglemath,mathscale,rise,formalize",
        **{
            "llm.base_url": base_url,
            "llm.model": MODEL,
            "llm.timeout_s": 10.0,
            "llm.max_retries": 1,
            "llm.prices": PRICES,
        },
        **overrides,
    )


def llm_rows(out: Path) -> Counter[str]:
    """LLM-made rows per kind: sft by generator, DPO pairs by error type, formal by stage."""
    counts: Counter[str] = Counter()
    for row in read_table(out, "sft"):
        if row["generator"] in ("mugglemath", "mathscale"):
            counts[f"sft.{row['generator']}"] += 1
    for row in read_table(out, "dpo"):
        if row["error_type"] in ("llm_self_edit", "sampled_solution"):
            counts[f"dpo.{row['error_type']}"] += 1
    for row in read_table(out, "formal"):
        generator = json.loads(row["provenance"]).get("generator")
        if generator == "formalize_llm":
            counts["formal.formalize_llm"] += 1
    return counts


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    root = tmp_path_factory.mktemp("styles")
    done: dict[str, dict[str, Any]] = {}
    for name, (script_kw, overrides) in BUILDS.items():
        script = ScriptedLLM(**script_kw)
        out = root / name
        # check_schemas: every reply to a request with a schema must validate against it.
        with MockOpenAIServer(script, models=(MODEL,), check_schemas=True) as srv:
            report = run_build(config(out, srv.base_url, **overrides))
            done[name] = {
                "out": out,
                "report": report,
                "rows": llm_rows(out),
                "script": script,
                "requests": list(srv.requests),
                "rejected": Counter(r["reason"] for r in read_table(out, "rejected")),
            }
    yield done


def assert_close(rows: Counter[str], plain: Counter[str]) -> None:
    assert set(rows) == set(plain), (rows, plain)
    for kind, expected in plain.items():
        assert abs(rows[kind] - expected) <= 0.05 * expected, (kind, rows[kind], expected)


def test_the_plain_build_makes_every_kind_of_llm_row(builds: dict[str, dict[str, Any]]) -> None:
    plain = builds["plain"]["rows"]
    kinds = ("sft.mugglemath", "sft.mathscale", "dpo.llm_self_edit", "dpo.sampled_solution")
    assert all(plain[k] > 0 for k in (*kinds, "formal.formalize_llm")), plain


@pytest.mark.parametrize("style", ["think", "reasoning_content", "batch", "json_noise_structured"])
def test_llm_rows_match_the_plain_build(builds: dict[str, dict[str, Any]], style: str) -> None:
    assert_close(builds[style]["rows"], builds["plain"]["rows"])
    assert builds[style]["rejected"] == builds["plain"]["rejected"]


def test_unstripped_thinking_breaks_the_parsers(builds: dict[str, dict[str, Any]]) -> None:
    """The control the two tests above are measured against: without stripping, the draft
    in the think block is what RISE sees (the issue's 1,045 self-edit pairs fell to 0)."""
    rows, plain = builds["think_unstripped"]["rows"], builds["plain"]["rows"]
    assert rows["dpo.llm_self_edit"] == 0 < plain["dpo.llm_self_edit"]
    assert builds["think_unstripped"]["rejected"]["multi_line"] == plain["dpo.llm_self_edit"]
    assert rows["dpo.sampled_solution"] < plain["dpo.sampled_solution"]


def test_reasoning_is_cached_counted_and_kept_only_on_request(
    builds: dict[str, dict[str, Any]],
) -> None:
    for style in ("think", "reasoning_content"):
        out, llm = builds[style]["out"], builds[style]["report"]["llm"]
        assert llm["reasoning_tokens"] > 0 and llm["replies_with_reasoning"] > 0
        # ...and per generator, in the batches' stats (the build-generators artifact).
        stats = Catalog(out).query("SELECT stats FROM batches WHERE generator = 'mugglemath'")
        assert sum(json.loads(s).get("mugglemath.reasoning_tokens", 0) for (s,) in stats) > 0
        con = sqlite3.connect(out / "llm_cache.sqlite")
        column = "text" if style == "think" else "reasoning"
        (with_draft,) = con.execute(
            f"SELECT count(*) FROM samples WHERE {column} LIKE '%Draft:%'"
        ).fetchone()
        con.close()
        assert with_draft == llm["replies_with_reasoning"]
        for row in read_table(out, "sft"):
            if row["generator"] == "mugglemath":
                provenance = json.loads(row["provenance"])
                assert provenance["reasoning_tokens"] > 0
                assert "Draft" not in row["solution"] + row["question"]
                # llm.keep_reasoning is on for the reasoning_content build only.
                assert ("reasoning" in provenance) == (style == "reasoning_content")
                if style == "reasoning_content":
                    assert all("Draft:" in text for text in provenance["reasoning"])
    assert builds["plain"]["report"]["llm"]["reasoning_tokens"] == 0


def test_structured_outputs_remove_malformed_json(builds: dict[str, dict[str, Any]]) -> None:
    rates = {}
    for name in ("json_noise_plain", "json_noise_structured"):
        build = builds[name]
        asked = sum(build["script"].kinds[k] for k in JSON_KINDS)
        failed = sum(build["rejected"][reason] for reason in JSON_FAILURES)
        rates[name] = failed / asked
        with_schema = [r for r in build["requests"] if "response_format" in r]
        if name == "json_noise_structured":
            # Every JSON prompt carried its schema; no text prompt did.
            assert len(with_schema) == asked
            assert build["script"].malformed == Counter()
        else:
            assert with_schema == []
            # Every reply the script broke was rejected, none silently repaired or guessed.
            assert failed == sum(build["script"].malformed.values()) > 0
    assert rates["json_noise_structured"] == 0 < rates["json_noise_plain"]


def test_batch_build_is_recorded_and_costs_half(builds: dict[str, dict[str, Any]]) -> None:
    batch, plain = builds["batch"], builds["plain"]
    jobs = Catalog(batch["out"]).llm_batches()
    assert jobs and {j["status"] for j in jobs} == {"done"}
    assert batch["report"]["llm"]["batches_submitted"] == len(jobs)
    assert batch["report"]["llm"]["tokens_out"] == plain["report"]["llm"]["tokens_out"]
    cost = batch["report"]["llm"]["cost_usd_micros"]
    assert cost == pytest.approx(plain["report"]["llm"]["cost_usd_micros"] / 2, rel=0.01)


def test_editing_one_prompt_reasks_only_that_prompt(
    builds: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    plain = builds["plain"]
    before = {r["id"] for r in read_table(plain["out"], "sft")}
    self_edits = plain["script"].kinds["self_edit"]
    prompts = tmp_path / "prompts"
    shipped = PromptLibrary().get("rise.self_edit")
    (prompts / "rise").mkdir(parents=True)
    (prompts / "rise" / "self_edit.j2").write_text(
        shipped.source.replace("Keep the wording", "Keep the exact wording")
    )
    script = ScriptedLLM()
    with MockOpenAIServer(script, models=(MODEL,), check_schemas=True) as srv:
        cfg = config(plain["out"], srv.base_url, **{"llm.prompts_dir": prompts})
        run_build(cfg, overwrite=True)  # another prompt is another config
    assert script.kinds == {"self_edit": self_edits}  # nothing else was asked again
    assert {r["id"] for r in read_table(plain["out"], "sft")} == before
    edited = PromptLibrary(prompts).get("rise.self_edit").hash
    assert edited != shipped.hash
    pairs = [r for r in read_table(plain["out"], "dpo") if r["error_type"] == "llm_self_edit"]
    assert len(pairs) == plain["rows"]["dpo.llm_self_edit"]
    assert {json.loads(p["provenance"])["prompts"]["rise.self_edit"] for p in pairs} == {edited}
