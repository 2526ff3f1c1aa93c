"""The loop on the CPU with nothing downloaded: a small default build, a tiny random model with
an offline tokenizer, `mathsynth train sft` (20 steps), `mathsynth train dpo --loss rise`
(10 steps) on the SFT model, `mathsynth eval` on the result, all through the console script
and real Prefect flows; then the loop as one flow (build → train → eval)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from console import assert_one_line_error, mathsynth
from dataset_checks import read_table

pytest.importorskip("trl")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

# Hyperparameters for a 2-layer model learning in seconds (the defaults suit real models).
CONFIG = """\
train:
  logging_steps: 1
  save_steps: 10
  gradient_checkpointing: false
  sft: {learning_rate: 3.0e-3, batch_size: 8, max_rows: 64, max_length: 128}
  dpo: {learning_rate: 1.0e-3, batch_size: 4, max_rows: 4, max_length: 192}
  eval: {max_new_tokens: 16, batch_size: 8}
"""


@pytest.fixture(scope="module")
def env(harness_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    hf_home = tmp_path_factory.mktemp("hf-home")
    return {
        **harness_env,
        "HF_HOME": str(hf_home),
        "HF_HUB_OFFLINE": "1",  # nothing may be downloaded
        "TOKENIZERS_PARALLELISM": "false",
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("train")
    (path / "train.yaml").write_text(CONFIG)
    return path


@pytest.fixture(scope="module")
def small_build(work: Path) -> Path:
    """A small default build (`mathsynth build --max-seeds 4 --variants 8`), in process."""
    from mathsynth.config import load_config
    from mathsynth.flows.build import run_build

    out = work / "data"
    report = run_build(load_config(out=out, max_seeds=4, variants=8))
    assert report["totals"]["sft"] > 100 and report["totals"]["dpo"] > 100
    return out


@pytest.fixture(scope="module")
def tiny_model(small_build: Path, work: Path) -> Path:
    from tiny_lm import make_tiny_lm

    rows = read_table(small_build, "sft")
    return make_tiny_lm((f"{r['question']}\n{r['solution']}" for r in rows), work / "tiny")


def _train(env: dict[str, str], work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return mathsynth("train", *args, "--config", str(work / "train.yaml"), env=env, timeout=600)


def _record(output: Path) -> dict[str, Any]:
    return json.loads((output / "mathsynth_train.json").read_text())["result"]


def _artifacts(keys: list[str]) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    return {a.key: a for a in found}


def _assert_loads(model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}],
        add_generation_prompt=True,
        return_dict=True,
        return_tensors="pt",
    )
    with torch.no_grad():
        logits = model(**ids).logits
    assert torch.isfinite(logits).all()


@pytest.fixture(scope="module")
def sft(env: dict[str, str], work: Path, small_build: Path, tiny_model: Path) -> Path:
    out = work / "sft"
    proc = _train(
        env, work, "sft", "--data", str(small_build), "--model", str(tiny_model),
        "--output", str(out), "--max-steps", "20",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"sft: 20 steps on \d+ rows .*loss \d\.\d+ → \d\.\d+", proc.stdout)
    return out


def test_sft_lowers_the_loss_and_saves_a_model_that_loads(sft: Path, small_build: Path) -> None:
    result = _record(sft)
    losses = [loss for _, loss in result["losses"]]
    assert result["steps"] == 20 and len(losses) == 20
    assert result["rows"] == 64  # train.sft.max_rows of the test config
    # A random model starts near ln(vocab); 20 steps must take it well below its start.
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.3
    assert losses[-1] < losses[0]
    _assert_loads(sft)
    assert (sft / "loss_curve.png").read_bytes().startswith(b"\x89PNG")
    found = _artifacts(["train-sft-loss-curve", "train-sft-metrics"])
    assert found["train-sft-loss-curve"].data.startswith("data:image/png;base64,")
    metrics = {row["metric"]: row["value"] for row in json.loads(found["train-sft-metrics"].data)}
    assert metrics["steps"] == 20 and metrics["last loss"] < metrics["first loss"]


def test_a_rerun_resumes_a_finished_run_does_nothing(
    small_build: Path, tiny_model: Path, work: Path
) -> None:
    """In process: 2 steps, the same again (nothing to train), then 4 (continues at 3)."""
    from mathsynth.train_settings import TrainSettings
    from mathsynth.training.sft import run_sft

    def settings(steps: int) -> TrainSettings:
        return TrainSettings.model_validate(
            {"sft": {"max_steps": steps, "max_rows": 16, "max_length": 128, "batch_size": 8},
             "save_steps": 2, "logging_steps": 1, "gradient_checkpointing": False}
        )  # fmt: skip

    out = work / "resume"
    first = run_sft(small_build, str(tiny_model), out, settings(2))
    assert (first.steps, first.already_done, first.resumed_from) == (2, False, None)
    again = run_sft(small_build, str(tiny_model), out, settings(2))
    assert again.already_done and again.losses == first.losses
    longer = run_sft(small_build, str(tiny_model), out, settings(4))
    assert longer.resumed_from is not None and longer.resumed_from.endswith("checkpoint-2")
    assert [step for step, _ in longer.losses] == [1, 2, 3, 4]
    assert longer.losses[:2] == first.losses  # steps 1-2 come from the checkpoint's history


def test_lora_saves_the_adapter_and_a_merged_model(
    small_build: Path, tiny_model: Path, work: Path
) -> None:
    """In process: `--lora` trains a peft adapter; the output is the base with it merged in
    (loads with from_pretrained / vLLM), and the adapter alone in adapter/."""
    import torch
    from transformers import AutoModelForCausalLM

    from mathsynth.train_settings import TrainSettings
    from mathsynth.training.sft import run_sft

    settings = TrainSettings.model_validate(
        {"sft": {"max_steps": 2, "max_rows": 16, "max_length": 128, "learning_rate": 1e-2},
         "lora": {"enabled": True, "r": 4}, "gradient_checkpointing": False}
    )  # fmt: skip
    out = work / "lora"
    result = run_sft(small_build, str(tiny_model), out, settings)
    assert result.lora and result.steps == 2
    assert (out / "adapter" / "adapter_config.json").exists()
    base = AutoModelForCausalLM.from_pretrained(tiny_model).state_dict()
    merged = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert set(merged) == set(base)  # a plain model: no lora_A / lora_B left
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert any("q_proj" in k for k in changed)  # the adapter's update is merged in
    assert not any("embed_tokens" in k or "norm" in k for k in changed)  # only adapted layers


def test_another_run_into_the_same_output_is_refused(
    env: dict[str, str], work: Path, sft: Path, small_build: Path
) -> None:
    before = (sft / "mathsynth_train.json").read_text()
    proc = _train(
        env, work, "dpo", "--data", str(small_build), "--model", str(sft), "--output", str(sft)
    )
    assert_one_line_error(proc, "holds another run", "--overwrite")
    assert (sft / "mathsynth_train.json").read_text() == before


@pytest.fixture(scope="module")
def dpo(env: dict[str, str], work: Path, small_build: Path, sft: Path) -> Path:
    out = work / "dpo"
    proc = _train(
        env, work, "dpo", "--data", str(small_build), "--model", str(sft),
        "--output", str(out), "--max-steps", "10", "--loss", "rise",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def test_dpo_with_the_rise_loss_lowers_the_loss(dpo: Path) -> None:
    result = _record(dpo)
    losses = [loss for _, loss in result["losses"]]
    assert result["steps"] == 10 and len(losses) == 10
    assert losses[0] == pytest.approx(0.6931, abs=1e-3)  # policy == reference at step 1
    assert losses[-1] < losses[0] - 0.1
    assert result["metrics"]["train_loss"] < losses[0]
    _assert_loads(dpo)
    assert "train-dpo-loss-curve" in _artifacts(["train-dpo-loss-curve"])


def _benchmark(small_build: Path, path: Path, n: int = 6) -> Path:
    rows = read_table(small_build, "sft")[:n]
    path.write_text(
        "".join(
            json.dumps(
                {"id": r["id"], "question": r["question"], "answer": f"...\n#### {r['answer']}"}
            )
            + "\n"
            for r in rows
        )
    )
    return path


def test_eval_runs_on_the_trained_model(
    env: dict[str, str], work: Path, small_build: Path, dpo: Path
) -> None:
    bench = _benchmark(small_build, work / "held_out.jsonl")
    proc = mathsynth(
        "eval", "--model", str(dpo), "--benchmark", str(bench),
        "--config", str(work / "train.yaml"), env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = re.search(
        r"accuracy (\d\.\d{4}) \((\d+)/6\), 95% CI \[(\d\.\d{4}), (\d\.\d{4})\]", proc.stdout
    )
    assert line, proc.stdout
    accuracy, correct, low, high = float(line[1]), int(line[2]), float(line[3]), float(line[4])
    assert low <= accuracy <= high and accuracy == pytest.approx(correct / 6, abs=1e-4)
    results = dpo / "eval" / "held_out.jsonl"
    rows = [json.loads(x) for x in results.read_text().splitlines()]
    gold = {r["id"]: r["answer"] for r in read_table(small_build, "sft")}
    assert [r["id"] for r in rows] == [json.loads(x)["id"] for x in bench.read_text().splitlines()]
    assert all(r["gold"] == gold[r["id"]] for r in rows)
    assert sum(r["correct"] for r in rows) == correct
    assert all(r["verdict"] in {"correct", "incorrect", "no_answer", "error"} for r in rows)
    summary = json.loads((dpo / "eval" / "held_out.summary.json").read_text())
    assert summary["n"] == 6 and summary["backend"] == "transformers"
    assert "eval-summary" in _artifacts(["eval-summary"])


def test_the_loop_as_one_flow(
    small_build: Path,
    tiny_model: Path,
    work: Path,
    env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """build → train → eval (the base and the trained model), as the deployment runs it;
    here with the SFT stage alone and a few steps (the stages themselves are tested above)."""
    from mathsynth.flows.train import build_train_eval

    for key in ("HF_HOME", "HF_HUB_OFFLINE", "TOKENIZERS_PARALLELISM"):
        monkeypatch.setenv(key, env[key])
    bench = _benchmark(small_build, work / "loop_bench.jsonl", n=3)
    overrides = {
        "out": str(small_build),
        "max_seeds": 4,
        "variants": 8,
        "train.sft.max_steps": 2,
        "train.sft.max_rows": 16,
    }
    report = build_train_eval(
        base_model=str(tiny_model),
        benchmark=str(bench),
        output=str(work / "loop"),
        config_path=str(work / "train.yaml"),
        overrides=overrides,
        stages=["sft"],
    )
    assert report["build"]["batches_skipped"] == report["build"]["batches"]  # resumed: built
    assert report["train"]["sft"]["steps"] == 2
    assert [e["label"] for e in report["eval"]] == ["base", "sft"]
    assert all(e["n"] == 3 for e in report["eval"])
    assert report["eval"][1]["model"] == str(work / "loop" / "sft")
    table = json.loads(_artifacts(["loop-comparison"])["loop-comparison"].data)
    assert [row["stage"] for row in table] == ["base", "sft"]
