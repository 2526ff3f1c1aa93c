"""Near-duplicate removal: MinHash signatures, the greedy LSH pass, and the end-of-build pass
over a dataset (rejections naming the twin, derived rows, catalog, signatures reused)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from dataset_checks import read_table

from mathsynth.config import load_config
from mathsynth.executor.publish import drop_near_duplicates
from mathsynth.records import FormalStatement, PreferencePair, Problem, Verification
from mathsynth.storage.catalog import Catalog
from mathsynth.storage.shards import write_batch_shards
from mathsynth.text import word_ngrams, words
from mathsynth.verifiers.minhash import Signer
from mathsynth.verifiers.neardup import NearDupDetector

BASE = (
    "A farmer plants {a} rows of corn with {b} plants in each row, and a storm flattens "
    "some of the plants near the old red barn before the harvest begins in the autumn. The "
    "farmer walks along every row in the morning, counts the broken stalks one by one and "
    "writes the numbers in a notebook that she keeps in the kitchen drawer next to the stove. "
    "How many corn plants are still standing if {c} plants were flattened by the storm?"
)


def test_signatures_are_the_same_in_every_process() -> None:
    shingles = word_ngrams(words(BASE.format(a=3, b=4, c=5)), 5)
    here = Signer(64).to_bytes(Signer(64).sign(shingles)).hex()
    code = (
        "import sys, json\n"
        "from mathsynth.verifiers.minhash import Signer\n"
        "s = Signer(64)\n"
        "print(s.to_bytes(s.sign(json.loads(sys.argv[1]))).hex())\n"
    )
    other = subprocess.run(
        [sys.executable, "-c", code, json.dumps(shingles)],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
    ).stdout.strip()
    assert other == here
    assert Signer(64).from_bytes(bytes.fromhex(here)).jaccard(Signer(64).sign(shingles)) == 1.0


def test_greedy_pass_names_the_most_similar_kept_twin() -> None:
    detector = NearDupDetector(threshold=0.8)
    original = BASE.format(a=3, b=4, c=5)
    one_number = BASE.format(a=3, b=4, c=7)  # a near duplicate of `original`
    other = "Tom reads 12 pages a day. How many pages does he read in a week of reading?"
    rows = {"a": original, "b": one_number, "c": other, "d": original.replace("corn", "wheat")}
    ids = list(rows)
    sigs = np.stack([detector.signature(q) for q in rows.values()])
    found = {d.id: d for d in detector.resolve(ids, sigs)}
    assert set(found) == {"b"}  # "d" changes three words: below 0.8 against "a"
    assert found["b"].twin == "a" and found["b"].similarity >= 0.8
    # Order decides which copy is kept, nothing else.
    flipped = {d.id: d.twin for d in detector.resolve(ids[::-1], sigs[::-1])}
    assert flipped == {"a": "b"}


def test_band_prefilter_keeps_every_candidate() -> None:
    """Indexing only rows that share a band gives the same drops as indexing every row."""
    rng = random.Random(7)
    vocab = [f"w{i}" for i in range(400)]
    texts = []
    for _ in range(300):
        base = [rng.choice(vocab) for _ in range(80)]
        texts.append(" ".join(base))
        for _ in range(rng.randrange(3)):  # near copies: one word changed, or two
            copy = list(base)
            for _ in range(rng.randrange(1, 3)):
                copy[rng.randrange(80)] = rng.choice(vocab)
            texts.append(" ".join(copy))
    detector = NearDupDetector(threshold=0.8)
    ids = [f"r{i}" for i in range(len(texts))]
    sigs = np.stack([detector.signature(t) for t in texts])
    everything = detector.resolve(ids, sigs)
    mask = detector.shared_band(detector.band_keys(sigs))
    chosen = np.flatnonzero(mask)
    filtered = detector.resolve([ids[i] for i in chosen], sigs[chosen])
    assert filtered == everything
    keys = detector.band_keys(sigs)[chosen]
    by_component = detector.near_duplicates([ids[i] for i in chosen], sigs[chosen], keys)
    assert by_component == everything
    labels = detector.components(keys)
    assert len(set(labels.tolist())) > 100  # many small components, not one big one
    assert len(everything) > 50  # the corpus really has near duplicates
    assert mask.sum() < len(texts)  # and the prefilter really skipped rows


def _problem(question: str, n: int) -> Problem:
    return Problem(
        generator="infinitymath",
        method="instantiate",
        seed_id="s",
        question=question,
        solution=f"The answer is {n}.",
        answer=str(n),
        program="def solution():\n    return 0",
        verification=Verification("verified", "exec", "ok"),
    )


def _write(catalog: Catalog, out: Path, batch: int, problems: list[Problem]) -> None:
    records: list = []
    for p in problems:
        records += [
            p,
            PreferencePair(
                p.id, p.question, p.solution, p.solution + "!", "change_number", 0, 1, 0
            ),
            FormalStatement(p.id, p.question, "import Mathlib", f"theorem t : {p.answer} = 0"),
        ]
    info = write_batch_shards(out, batch, records)
    catalog.record_batch(
        batch,
        generator="infinitymath",
        tasks=len(problems),
        run_id="r",
        seconds=0.0,
        counts={t: s.rows for t, s in info.items()},
        stats={},
        shards=[(t, str(s.path.relative_to(out)), s.rows, s.bytes) for t, s in info.items()],
    )


def test_dataset_pass_drops_later_copies_with_their_pairs_and_reuses_signatures(
    tmp_path: Path,
) -> None:
    catalog = Catalog(tmp_path)
    catalog.init("h", {}, overwrite=False)
    first = [_problem(BASE.format(a=3, b=4, c=n), n) for n in (5, 60)]
    _write(catalog, tmp_path, 0, first)
    later = [_problem(BASE.format(a=3, b=4, c=n), n) for n in (7,)]
    other = [_problem("What is the area of a square with side 9 cm in square centimetres?", 81)]
    _write(catalog, tmp_path, 1, later + other)
    ctx = SimpleNamespace(config=load_config(out=tmp_path), out=tmp_path)

    figures = drop_near_duplicates(ctx, catalog)
    # Row 60 is a near copy of row 5 in the same batch, row 7 one of row 5 in an earlier one.
    assert figures["dropped"] == {"sft": 2, "dpo": 2, "formal": 2}
    assert figures["rows_checked"] == 4 and figures["signatures_computed"] == 4
    kept = {r["id"] for r in read_table(tmp_path, "sft")}
    assert kept == {first[0].id, other[0].id}
    assert {r["source_id"] for r in read_table(tmp_path, "dpo")} == kept
    assert {r["source_id"] for r in read_table(tmp_path, "formal")} == kept
    rejected = [r for r in read_table(tmp_path, "rejected") if r["reason"] == "near_duplicate"]
    assert {json.loads(r["record"])["id"] for r in rejected} == {first[1].id, later[0].id}
    assert all(f"near duplicate of row {first[0].id}" in r["detail"] for r in rejected)
    # The manifest follows the rewritten shards.
    counts = [json.loads(c) for (c,) in catalog.query("SELECT counts FROM batches ORDER BY batch")]
    assert [c["sft"] for c in counts] == [1, 1]
    assert [c["rejected"] for c in counts] == [1, 1]
    shard_rows = dict(catalog.query("SELECT tbl, sum(rows) FROM shards GROUP BY tbl"))
    assert shard_rows == {"sft": 2, "dpo": 2, "formal": 2, "rejected": 2}
    assert catalog.query("SELECT count(*) FROM signatures") == [(4,)]

    again = drop_near_duplicates(ctx, catalog)
    assert again["dropped"] == {}
    assert again["signatures_computed"] == 0 and again["signatures_reused"] == 2


def test_threshold_and_switch_come_from_the_config(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path)
    catalog.init("h", {}, overwrite=False)
    _write(catalog, tmp_path, 0, [_problem(BASE.format(a=3, b=4, c=n), n) for n in (5, 7)])
    strict = SimpleNamespace(config=load_config(out=tmp_path, **{"near_dup.threshold": 0.97}))
    strict.out = tmp_path
    assert drop_near_duplicates(strict, catalog)["dropped"] == {}
    off = SimpleNamespace(config=load_config(out=tmp_path, **{"near_dup.enabled": False}))
    off.out = tmp_path
    assert drop_near_duplicates(off, catalog) == {
        "enabled": False,
        "threshold": 0.8,
        "ngram": 5,
        "num_perm": 128,
    }
    assert len(read_table(tmp_path, "sft")) == 2


def test_components_follow_chains_across_bands() -> None:
    # rows 0-1 share band 0, rows 1-3 band 1, row 2 shares nothing, rows 4-5 band 1
    keys = np.array([[1, 10], [1, 11], [2, 12], [3, 11], [4, 13], [5, 13]], dtype=np.uint64)
    assert NearDupDetector.components(keys).tolist() == [0, 0, 2, 0, 4, 4]
    assert NearDupDetector.shared_band(keys).tolist() == [True, True, False, True, True, True]
