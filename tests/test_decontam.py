"""Decontamination: the three methods, benchmark sources, the config, and a build in which
matching seeds are dropped before generation and matching rows go to rejected/."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dataset_checks import read_table

from mathsynth import registry
from mathsynth.config import load_config
from mathsynth.errors import ConfigError, InputFileError
from mathsynth.executor.local import BuildContext, finish_build, prepare_build, run_batch
from mathsynth.generators.seeds.library import bundled_seeds
from mathsynth.records import Problem, Record, Rejection
from mathsynth.registry import Method, Plan, StageContext
from mathsynth.seeds import SeedTask
from mathsynth.stage import SourceStage
from mathsynth.storage.benchmarks import read_benchmark
from mathsynth.storage.catalog import Catalog
from mathsynth.text import masked_words
from mathsynth.verifiers.decontam import ContaminationIndex, Decontaminate, decontaminate_seeds
from mathsynth.verifiers.sandbox import Sandbox

ITEM = (
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast every morning and bakes "
    "muffins for her friends every day with four. She sells the remainder at the farmers' "
    "market daily for $2 per fresh duck egg. How much in dollars does she make every day at "
    "the farmers' market?"
)
DENSE = (
    "Tom buys 3 apples for 2 dollars each and 5 pears for 4 dollars each. He gives 6 of them "
    "to 2 friends and eats 1 of them on his 9 minute walk. How many are left after 20 minutes?"
)
DENSE_VARIANT = (
    "Tom buys 7 apples for 8 dollars each and 11 pears for 3 dollars each. He gives 10 of "
    "them to 4 friends and eats 2 of them on his 12 minute walk. How many are left after 35 "
    "minutes?"
)
SHORT = "Compute the value of 7 choose 3 exactly."  # 8 words: matched as a whole run
TINY = "Find x if 2x = 10."  # under 8 words: only the whole text matches


@pytest.fixture(scope="module")
def index() -> ContaminationIndex:
    return ContaminationIndex(
        [
            ("gsm8k-test", [("0", ITEM), ("1", DENSE)]),
            ("math-500", [("test/1.json", SHORT), ("t2", TINY)]),
        ]
    )


def test_masking_makes_number_variants_read_the_same() -> None:
    a = masked_words("She has 3.5 kg, $1,200 and twenty-five apples.")
    b = masked_words("She has 12 kg, $7 and 3 apples.")
    assert a == b == ["she", "has", "<n>", "kg", "<n>", "and", "<n>", "apples"]


def test_verbatim_copy_matches_by_every_method(index: ContaminationIndex) -> None:
    found = index.check("Q: " + ITEM.upper())
    assert found is not None
    assert set(found.hits) == {"ngram", "masked_ngram", "fuzzy"}
    assert (found.first.benchmark, found.first.item_id) == ("gsm8k-test", "0")
    assert "item 0 of benchmark gsm8k-test" in found.detail()


def test_number_changed_variant_is_caught_only_with_numbers_masked(
    index: ContaminationIndex,
) -> None:
    found = index.check(DENSE_VARIANT)
    assert found is not None
    assert "ngram" not in found.hits  # every 13-word window holds a changed number
    assert found.hits["masked_ngram"].item_id == "1"


def test_reworded_variant_is_caught_by_the_fuzzy_method(index: ContaminationIndex) -> None:
    words = ITEM.replace("16", "30").split()
    for i in range(len(words) - 12, 0, -12):  # a word inserted every 12 words: no 13-gram
        words.insert(i, "indeed")
    found = index.check(" ".join(words))
    assert found is not None
    assert set(found.hits) == {"fuzzy"}
    assert found.hits["fuzzy"].similarity >= 0.6


def test_short_items(index: ContaminationIndex) -> None:
    assert index.check("First, compute the value of 7 choose 3 exactly, then add 2.") is not None
    found = index.check("Compute the value of 9 choose 4 exactly.")
    assert found is not None and found.hits["masked_ngram"].item_id == "test/1.json"
    assert index.check("find x if 2x = 10") is not None  # the whole text
    assert index.check("First find x if 2x = 10, then y.") is None  # not inside a longer text


def test_clean_text_passes(index: ContaminationIndex) -> None:
    assert index.check("A train travels 60 km in 1.5 hours. What is its average speed?") is None


def _problem(question: str) -> Problem:
    return Problem("toy", "t", "s", question, "The answer is 1.", "1")


def test_stage_rejects_matching_problems_with_benchmark_and_item(index: ContaminationIndex) -> None:
    stage = Decontaminate(index)
    clean = _problem("How many legs do 3 spiders have altogether?")
    out = list(stage.run([clean, _problem(ITEM.replace("16", "12")), Rejection("a", "b", "c", {})]))
    assert out[0] is clean and isinstance(out[2], Rejection) and out[2].stage == "a"
    rejected = out[1]
    assert isinstance(rejected, Rejection)
    assert (rejected.stage, rejected.reason) == ("decontaminate", "contaminated")
    assert "item 0 of benchmark gsm8k-test" in rejected.detail
    assert stage.stats["hit:masked_ngram:gsm8k-test"] == 1 and stage.stats["checked"] == 2


def test_seeds_are_split_before_generation(index: ContaminationIndex) -> None:
    seeds = bundled_seeds()[:3]
    dirty = seeds[0].model_copy(update={"question": ITEM})
    kept, rejected, stats = decontaminate_seeds(index, [dirty, *seeds[1:]])
    assert [s.id for s in kept] == [s.id for s in seeds[1:]]
    assert rejected[0].record["id"] == dirty.id and rejected[0].reason == "contaminated"
    assert stats["checked"] == 3 and stats["hit:ngram:gsm8k-test"] == 1


# -- benchmark sources ------------------------------------------------------------------------


def test_benchmarks_from_jsonl_parquet_and_a_saved_dataset(tmp_path: Path) -> None:
    jsonl = tmp_path / "gsm8k_test.jsonl"
    jsonl.write_text(
        "\n".join(json.dumps({"question": q, "answer": "#### 1"}) for q in ("A?", "B?")) + "\n"
    )
    bench = read_benchmark(str(jsonl))
    assert (bench.name, bench.items) == ("gsm8k_test", (("0", "A?"), ("1", "B?")))

    parquet = tmp_path / "math500.parquet"
    pq.write_table(pa.table({"problem": ["P1", "P2"], "unique_id": ["test/a.json", "b"]}), parquet)
    assert read_benchmark(str(parquet)).items == (("test/a.json", "P1"), ("b", "P2"))

    import datasets

    saved = tmp_path / "saved"
    datasets.DatasetDict(
        {
            "train": datasets.Dataset.from_dict({"question": ["train item"]}),
            "test": datasets.Dataset.from_dict({"question": ["test item"], "id": [7]}),
        }
    ).save_to_disk(str(saved))
    assert read_benchmark(str(saved)).items == (("7", "test item"),)  # the test split


def test_unusable_benchmarks_are_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="no such file"):
        read_benchmark(str(tmp_path / "missing.jsonl"))
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"text": "no question here"}\n')
    with pytest.raises(InputFileError, match="no row has a question or problem"):
        read_benchmark(str(wrong))
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"question": "fine"}\n{not json\n')
    with pytest.raises(InputFileError, match="broken.jsonl:2"):
        read_benchmark(str(broken))


def test_config_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    listed = tmp_path / "listed.yaml"
    listed.write_text("decontaminate: [a.jsonl, openai/gsm8k:main]\n")
    assert load_config(listed).decontaminate.sources == ["a.jsonl", "openai/gsm8k:main"]
    mapping = tmp_path / "mapping.yaml"
    mapping.write_text("decontaminate: {sources: a.jsonl, fuzzy_threshold: 0.7}\n")
    config = load_config(mapping)
    assert config.decontaminate.sources == ["a.jsonl"]
    assert config.decontaminate.fuzzy_threshold == 0.7
    assert load_config(**{"decontaminate.sources": "x,y,x"}).decontaminate.sources == ["x", "y"]
    monkeypatch.setenv("MATHSYNTH_DECONTAMINATE__SOURCES", "p,q")
    assert load_config().decontaminate.sources == ["p", "q"]
    # Benchmarks change what a build keeps, so they change the config hash.
    assert (
        load_config().content_hash() != load_config(**{"decontaminate.sources": "x"}).content_hash()
    )
    with pytest.raises(ConfigError, match="fuzzy_threshold"):
        load_config(**{"decontaminate.fuzzy_threshold": 1.5})


# -- a build --------------------------------------------------------------------------------

TOY_QUESTION = (
    "A pet shop keeps {n} parrots in one large cage and twice as many finches in a second "
    "cage near the window. How many birds does the pet shop keep in the two cages?"
)


class Birds(SourceStage):
    name = "toy"

    def run(self, tasks: Iterable[SeedTask]) -> Iterator[Record]:
        for task in tasks:
            n = task.index + 2
            yield Problem(
                generator="toy",
                method="birds",
                seed_id="toy",
                question=TOY_QUESTION.format(n=n),
                solution=f"{n} + 2 * {n} = {3 * n}\nThe answer is {3 * n}.",
                answer=str(3 * n),
                program="def solution(n):\n    return 3 * n\n",
                variables={"n": n},
            )


def _toy_plan(ctx: StageContext) -> Plan:
    return Plan([(None, 0, 3)])


@pytest.fixture()
def toy_method() -> Iterator[Method]:
    method = registry.register(
        Method(name="toy", role="source", offline=lambda ctx: Birds(), plan=_toy_plan)
    )
    yield method
    registry.unregister("toy")


def test_build_drops_contaminated_seeds_and_rejects_contaminated_rows(
    toy_method: Method, tmp_path: Path
) -> None:
    seeds = bundled_seeds()[:2]
    bench = tmp_path / "bench.jsonl"
    items = [
        {"question": TOY_QUESTION.format(n=40)},  # the toy rows, numbers changed
        {"question": seeds[0].question.replace("4", "6"), "id": "seed-twin"},
    ]
    bench.write_text("".join(json.dumps(item) + "\n" for item in items))
    config = load_config(
        out=tmp_path / "ds",
        generators="toy,infinitymath",
        max_seeds=2,
        variants=3,
        **{"decontaminate.sources": str(bench)},
    )
    with Sandbox(workers=1) as sandbox:
        ctx = BuildContext(config, config.out_dir, "run", Catalog(config.out_dir), sandbox)
        batches, done = prepare_build(ctx, overwrite=False)
        assert [s.id for s in ctx.seeds] == [seeds[1].id]  # dropped before generation
        report = finish_build(ctx, [run_batch(ctx, b, done) for b in batches], 0.0)

    sft = read_table(config.out_dir, "sft")
    assert {r["seed_id"] for r in sft} == {seeds[1].id}
    assert not any(r["generator"] == "toy" for r in sft)
    rejected = [r for r in read_table(config.out_dir, "rejected") if r["reason"] == "contaminated"]
    by_stage = {}
    for r in rejected:
        by_stage.setdefault(r["stage"], []).append(r)
    assert len(by_stage["decontaminate"]) == 4  # one seed + three toy rows
    seed_row = next(r for r in rejected if json.loads(r["record"])["id"] == seeds[0].id)
    assert "item seed-twin of benchmark bench" in seed_row["detail"]
    toy_rows = [r for r in rejected if json.loads(r["record"]).get("generator") == "toy"]
    assert len(toy_rows) == 3
    assert all("item 0 of benchmark bench" in r["detail"] for r in toy_rows)
    assert report["seed_problems"]["contaminated"] == 1
    assert report["seed_problems"]["untemplated"] == 0

    card = (config.out_dir / "README.md").read_text()
    assert "## Decontamination" in card and "| bench |" in card
    stored = Catalog(config.out_dir).report("decontamination")
    assert stored["seeds"]["hit:masked_ngram:bench"] == 1
    assert stored["benchmarks"][0] == {
        "name": "bench",
        "items": 2,
        "source": str(bench),
        "skipped_rows": 0,
    }


@pytest.mark.slow
def test_cli_build_against_a_file_and_a_hub_benchmark(
    tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    import io
    import os

    from console import assert_one_line_error, mathsynth
    from hub_mock_server import MockHub, Repo

    seeds = bundled_seeds()[:3]
    local = tmp_path / "local_test.jsonl"
    local.write_text(json.dumps({"question": seeds[0].question}) + "\n")
    buffer = io.BytesIO()
    hub_item = seeds[1].question.replace("1", "7")  # numbers changed
    pq.write_table(pa.table({"question": ["An unrelated test item.", hub_item]}), buffer)
    out = tmp_path / "ds"
    with MockHub("hf_unused") as hub:
        repo = Repo("dataset", "bench/gsm8k", private=False)
        repo.branches["main"]["data/test-00000-of-00001.parquet"] = buffer.getvalue()
        hub.repos[("dataset", "bench/gsm8k")] = repo
        env = {k: v for k, v in prefect_env.items() if not k.startswith("HF_")}
        env.update(HF_ENDPOINT=hub.url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_XET="1")

        missing = tmp_path / "missing.jsonl"
        proc = mathsynth(
            "build", "--out", str(out), "--decontaminate", f"{local},{missing}", env=env
        )
        assert_one_line_error(proc, "missing.jsonl", "no such file")
        assert not out.exists()

        proc = mathsynth(
            "build", "--out", str(out), "--max-seeds", "3", "--variants", "4",
            "--generators", "infinitymath", "--decontaminate", f"{local},bench/gsm8k", env=env,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 seed(s) match a benchmark" in proc.stderr
    assert {r["seed_id"] for r in read_table(out, "sft")} == {seeds[2].id}
    rejected = {
        json.loads(r["record"])["id"]: r["detail"]
        for r in read_table(out, "rejected")
        if r["reason"] == "contaminated"
    }
    assert "item 0 of benchmark local_test" in rejected[seeds[0].id]
    assert "item 1 of benchmark bench/gsm8k" in rejected[seeds[1].id]
    card = (out / "README.md").read_text()
    assert "| local_test |" in card and "| bench/gsm8k |" in card
    assert os.environ.get("HF_ENDPOINT") != hub.url  # the test process was left alone
