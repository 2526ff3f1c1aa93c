"""The pieces of `mathsynth train` / `eval` that need no model: the `train:` config section,
the Wilson interval, grading, benchmark reading, and the command line on bad input (one
line, exit 2), including a machine without the `train` extra."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from console import assert_one_line_error, mathsynth

from mathsynth.config import load_config
from mathsynth.errors import ConfigError, InputFileError
from mathsynth.training.benchmark import BenchmarkItem, read_benchmark
from mathsynth.training.evaluate import grade, summarise, wilson_interval

# -- the config section ------------------------------------------------------------------------


def test_train_section_from_yaml_env_and_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  sft: {learning_rate: 1.0e-4, packing: false}\n  lora: {r: 8}\n")
    monkeypatch.setenv("MATHSYNTH_TRAIN__DPO__BETA", "0.3")
    config = load_config(cfg, **{"train.dpo.loss": "rise"})
    assert config.train.sft.learning_rate == 1e-4 and config.train.sft.packing is False
    assert config.train.lora.r == 8 and config.train.lora.enabled is False
    assert config.train.dpo.beta == 0.3 and config.train.dpo.loss == "rise"
    assert config.train.eval.split == "test"  # untouched defaults stay


def test_train_section_does_not_change_the_build_hash(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  sft: {learning_rate: 0.5}\n  seed: 9\n")
    assert load_config(cfg).content_hash() == load_config().content_hash()


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("train:\n  sft: {lerning_rate: 1}\n", "train.sft.lerning_rate"),
        ("train:\n  dpo: {loss: hinge}\n", "train.dpo.loss"),
        ("train:\n  eval: {prompt_template: 'no placeholder'}\n", "{question}"),
        ("train:\n  precision: fp8\n", "train.precision"),
    ],
)
def test_bad_train_settings_are_one_clear_error(
    tmp_path: Path, yaml_text: str, needle: str
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError, match=r"invalid config value") as info:
        load_config(cfg)
    assert needle in str(info.value) and "\n" not in str(info.value)


# -- scoring -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [
        (0, 10, 0.0, 0.277533),  # the normal approximation would give [0, 0]
        (5, 10, 0.236593, 0.763407),
        (10, 10, 0.722467, 1.0),
        (81, 100, 0.722212, 0.874852),
    ],
)
def test_wilson_interval_solves_the_score_quadratic(
    k: int, n: int, low: float, high: float
) -> None:
    got_low, got_high = wilson_interval(k, n)
    assert got_low == pytest.approx(low, abs=1e-6)
    assert got_high == pytest.approx(high, abs=1e-6)


def test_wilson_interval_of_nothing_is_everything() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_grading_extracts_and_checks_each_answer() -> None:
    items = [
        BenchmarkItem("a", "q", "72"),
        BenchmarkItem("b", "q", "1/2"),
        BenchmarkItem("c", "q", "15"),
        BenchmarkItem("d", "q", "3"),
        BenchmarkItem("e", "q", "1,200"),
    ]
    completions = [
        "48 + 24 = 72\nThe answer is 72.",
        "Half of it: $\\boxed{0.5}$",
        "3 * 4 = 12\nThe answer is 12.",
        "I think it is three or so",
        "#### 1200",
    ]
    graded = grade(items, completions)
    assert [g.verdict for g in graded] == [
        "correct",
        "correct",
        "incorrect",
        "no_answer",
        "correct",
    ]
    assert [g.pred for g in graded] == ["72", "0.5", "12", None, "1200"]
    summary = summarise(
        graded, model="m", benchmark="b", skipped_rows=0, backend="x", seconds=0.0, results="r"
    )
    assert (summary.n, summary.correct, summary.accuracy) == (5, 3, 0.6)
    assert summary.verdicts == {"correct": 3, "incorrect": 1, "no_answer": 1}
    assert (summary.ci_low, summary.ci_high) == pytest.approx(wilson_interval(3, 5))


# -- benchmarks --------------------------------------------------------------------------------


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_gsm8k_jsonl_benchmark_keeps_rows_with_broken_annotations(tmp_path: Path) -> None:
    bench = _jsonl(
        tmp_path / "gsm8k_test.jsonl",
        [
            {"question": "A?", "answer": "2*3=<<2*3=6>>6\n#### 6"},
            # An annotation the decoupler cannot parse: still a benchmark item.
            {"question": "B?", "answer": "560//10=<<560//10=56>>56\n#### 56"},
            {"question": "C?", "answer": "no final line"},
            {"question": "D?", "answer": "So 1,200 in all.\n#### 1,200"},
        ],
    )
    read = read_benchmark(str(bench))
    assert [(i.question, i.answer) for i in read.items] == [
        ("A?", "6"),
        ("B?", "56"),
        ("D?", "1200"),
    ]
    assert read.skipped == 1 and "gsm8k_test.jsonl:3" in (read.first_skipped or "")
    assert read.name == "gsm8k_test"
    assert len(read_benchmark(str(bench), max_items=2).items) == 2


def test_math_parquet_benchmark(tmp_path: Path) -> None:
    path = tmp_path / "math500.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "problem": "Simplify 2/4.",
                    "solution": "It is $\\boxed{\\frac{1}{2}}$.",
                    "id": "m1",
                },
                {"problem": "Sum?", "solution": "$\\boxed{10}$", "id": "m2"},
            ]
        ),
        path,
    )
    read = read_benchmark(str(path))
    assert [(i.id, i.answer) for i in read.items] == [("m1", "\\frac{1}{2}"), ("m2", "10")]


def test_saved_dataset_benchmark_reads_the_requested_split(tmp_path: Path) -> None:
    import datasets

    train = datasets.Dataset.from_list([{"question": "T?", "answer": "#### 1"}])
    test = datasets.Dataset.from_list([{"question": "E?", "answer": "#### 2"}])
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "saved"))
    assert [i.question for i in read_benchmark(str(tmp_path / "saved")).items] == ["E?"]
    assert [i.question for i in read_benchmark(str(tmp_path / "saved"), "train").items] == ["T?"]
    with pytest.raises(InputFileError, match="no split 'validation' \\(train, test\\)"):
        read_benchmark(str(tmp_path / "saved"), "validation")


def test_benchmark_without_items_is_refused(tmp_path: Path) -> None:
    bench = _jsonl(tmp_path / "b.jsonl", [{"question": "no answer line", "answer": "x"}])
    with pytest.raises(InputFileError, match="no benchmark item"):
        read_benchmark(str(bench))


# -- the command line --------------------------------------------------------------------------


def _without_train_extra(tmp_path: Path) -> dict[str, str]:
    """An environment in which torch, transformers, trl and peft cannot be imported (as on a
    base install): a sitecustomize that marks them absent in sys.modules."""
    shim = tmp_path / "shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(
        "import sys\nfor name in ('torch', 'transformers', 'trl', 'peft'):\n"
        "    sys.modules[name] = None\n"
    )
    return {**os.environ, "PYTHONPATH": str(shim)}


@pytest.mark.parametrize(
    "args",
    [
        ["train", "sft", "--data", "d", "--model", "m", "--output", "o"],
        ["train", "dpo", "--data", "d", "--model", "m", "--output", "o", "--loss", "rise"],
        ["eval", "--model", "m", "--benchmark", "b.jsonl"],
    ],
)
def test_without_the_extra_the_commands_say_what_to_install(
    tmp_path: Path, args: list[str]
) -> None:
    proc = mathsynth(*args, env=_without_train_extra(tmp_path), cwd=tmp_path)
    assert_one_line_error(proc, "needs the package 'torch'", "pip install 'mathsynth[train]'")
    assert not (tmp_path / "o").exists()


def test_missing_dataset_is_one_line(tmp_path: Path) -> None:
    proc = mathsynth(
        "train", "sft", "--data", str(tmp_path / "none"), "--model", "m",
        "--output", str(tmp_path / "o"),
    )  # fmt: skip
    assert_one_line_error(proc, "none", "no such dataset directory")
    assert not (tmp_path / "o").exists()


def test_dataset_without_dpo_shards_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "ds" / "sft").mkdir(parents=True)
    proc = mathsynth(
        "train", "dpo", "--data", str(tmp_path / "ds"), "--model", "m",
        "--output", str(tmp_path / "o"),
    )  # fmt: skip
    assert_one_line_error(proc, "no dpo shards", "mathsynth build --out")


def test_missing_model_directory_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "ds" / "sft").mkdir(parents=True)
    (tmp_path / "ds" / "sft" / "part-00000.parquet").write_bytes(b"")
    out = tmp_path / "o"
    proc = mathsynth(
        "train", "sft", "--data", str(tmp_path / "ds"), "--model", str(tmp_path / "nomodel"),
        "--output", str(out),
    )  # fmt: skip
    assert_one_line_error(proc, "cannot load model", "no such directory")
    assert not out.exists()
    proc = mathsynth("eval", "--model", "./nomodel", "--benchmark", "b.jsonl", cwd=tmp_path)
    assert_one_line_error(proc, "'./nomodel'", "no such directory")


def test_unknown_loss_is_a_usage_error(tmp_path: Path) -> None:
    proc = mathsynth(
        "train", "dpo", "--data", "d", "--model", "m", "--output", "o", "--loss", "hinge"
    )
    assert proc.returncode == 2
    assert "Usage:" in proc.stderr and "hinge" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_benchmark_is_one_line(tmp_path: Path) -> None:
    proc = mathsynth("eval", "--model", "m", "--benchmark", str(tmp_path / "gsm8k.jsonl"))
    assert_one_line_error(proc, "gsm8k.jsonl", "no such file")


def test_the_loop_deployment_names_the_flow_with_its_parameters() -> None:
    import inspect

    import yaml
    from prefect.flows import load_flow_from_entrypoint

    root = Path(__file__).resolve().parents[1]
    deployments = yaml.safe_load((root / "prefect.yaml").read_text())["deployments"]
    (loop,) = [d for d in deployments if d["name"] == "build-train-eval"]
    flow = load_flow_from_entrypoint(loop["entrypoint"])
    assert flow.name == "mathsynth-build-train-eval"
    signature = inspect.signature(flow.fn)
    required = {n for n, p in signature.parameters.items() if p.default is p.empty}
    assert required <= set(loop["parameters"]) <= set(signature.parameters)
