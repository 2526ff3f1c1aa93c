"""Concept names, graph edges and weights, the random walk, and Parquet persistence."""

from __future__ import annotations

import math
import random
from pathlib import Path

import duckdb
import pytest

from mathsynth.errors import InputFileError
from mathsynth.generators.mathscale.concept_graph import (
    ConceptGraph,
    ConceptNames,
    normalize_concept,
    singularize,
)

# A hand-made seed set: (seed id, topics, knowledge points).
OBSERVATIONS = [
    ("s1", ["Fractions", "Ratios"], ["equivalent fractions", "simplifying ratios"]),
    ("s2", ["fractions"], ["Equivalent Fractions", "adding fractions"]),
    ("s3", ["ratios", "percentages"], ["simplifying ratios", "percent of a quantity"]),
    ("s4", ["percentages"], ["percents of a quantity", "discounts"]),
    ("s5", ["geometry"], ["area of a rectangle"]),
]


def build() -> ConceptGraph:
    graph = ConceptGraph()
    for seed_id, topics, kps in OBSERVATIONS:
        graph.add(seed_id, topics, kps)
    return graph


def test_normalisation_and_merging() -> None:
    assert normalize_concept("  Adding   Fractions!! ") == "adding fraction"
    assert singularize("quantities") == "quantity" and singularize("plus") == "plus"
    assert singularize("boxes") == "box" and singularize("class") == "class"
    names = ConceptNames()
    assert names.canonical("kp", "Percent of a quantity") == "percent of a quantity"
    assert names.canonical("kp", "percents of a quantity.") == "percent of a quantity"
    assert names.canonical("kp", "percentage of a quantity") == "percent of a quantity"
    assert names.canonical("kp", "addition") == "addition"
    assert names.canonical("kp", "subtraction") == "subtraction"
    assert names.canonical("topic", "addition") == "addition"  # kinds are separate
    assert names.canonical("kp", " !! ") is None


def test_edges_and_log_weights() -> None:
    graph = build()
    topic, kp = "topic", "kp"
    frac, ratio, pct = (topic, "fraction"), (topic, "ratio"), (topic, "percentage")
    equiv, simplify = (kp, "equivalent fraction"), (kp, "simplifying ratio")
    pct_of = (kp, "percent of a quantity")
    assert graph.counts[frozenset((frac, equiv))] == 2  # s1 and s2, names merged
    assert graph.counts[frozenset((ratio, simplify))] == 2
    assert graph.counts[frozenset((pct, pct_of))] == 2  # "percents of a quantity" merged
    assert graph.counts[frozenset((frac, ratio))] == 1  # topic–topic
    assert graph.counts[frozenset((equiv, simplify))] == 1  # KP–KP
    assert graph.weight(frac, equiv) == pytest.approx(math.log(3))
    assert graph.weight(frac, ratio) == pytest.approx(math.log(2))
    assert graph.weight(frac, pct) == 0.0
    assert graph.neighbors(ratio, "topic") == [frac, pct]
    # s1 contributes C(4,2) = 6 pairs, s2 3, s3 6, s4 3, s5 1.
    assert sum(graph.counts.values()) == 19
    assert not graph.add("s1", ["anything"], ["else"])  # known seed ids are not re-counted
    assert sum(graph.counts.values()) == 19


def test_walk_obeys_step_rules_and_never_revisits() -> None:
    graph = build()
    seen_lengths = set()
    for i in range(300):
        walk = graph.sample_concepts(random.Random(i))
        nodes = walk.nodes
        assert len(nodes) == len(set(nodes))
        assert 1 <= len(walk.topics) <= 3 and 1 <= len(walk.kps) <= 5
        topics = [("topic", t) for t in walk.topics]
        kps = [("kp", k) for k in walk.kps]
        for a, b in zip(topics, topics[1:], strict=False):
            assert b in graph.neighbors(a, "topic")
        assert kps[0] in graph.neighbors(topics[-1], "kp")
        for a, b in zip(kps, kps[1:], strict=False):
            assert b in graph.neighbors(a, "kp")
        seen_lengths.add((len(walk.topics), len(walk.kps)))
        if walk.topics[0] == "geometry":  # isolated topic: its phase stops early
            assert walk.concepts == ["geometry", "area of a rectangle"]
    assert (3, 1) in seen_lengths and (2, 2) in seen_lengths


def test_walk_follows_weights() -> None:
    graph = ConceptGraph()
    for i in range(20):  # "a"–"b" co-occur 20 times, "a"–"c" once
        graph.add(f"ab{i}", ["a", "b"], ["k"])
    graph.add("ac", ["a", "c"], ["k"])
    picks = [graph._step(("topic", "a"), "topic", set(), random.Random(i)) for i in range(400)]
    share_c = picks.count(("topic", "c")) / len(picks)
    expected = math.log(2) / (math.log(2) + math.log(21))
    assert abs(share_c - expected) < 0.06


def test_walk_is_deterministic_for_a_seed() -> None:
    graph = build()
    first = [graph.sample_concepts(random.Random(42)) for _ in range(3)]
    assert first[0] == first[1] == first[2]
    assert build().sample_concepts(random.Random(42)) == first[0]


def test_empty_graph_cannot_be_walked() -> None:
    with pytest.raises(ValueError, match="no topic"):
        ConceptGraph().sample_concepts(random.Random(0))


def test_persistence_round_trip(tmp_path: Path) -> None:
    graph = build()
    graph.save(tmp_path / "cg")
    loaded = ConceptGraph.load(tmp_path / "cg")
    assert loaded is not None
    assert loaded.members == graph.members
    assert loaded.edges() == graph.edges()
    assert loaded.sample_concepts(random.Random(3)) == graph.sample_concepts(random.Random(3))
    # Reuse across builds: new seeds extend the stored graph, known ones are not re-counted.
    loaded.add("s6", ["fraction"], ["adding fractions"])
    loaded.add("s1", ["fractions"], ["equivalent fractions"])
    loaded.save(tmp_path / "cg")
    again = ConceptGraph.load(tmp_path / "cg")
    assert again is not None
    assert again.counts[frozenset((("topic", "fraction"), ("kp", "adding fraction")))] == 2
    assert again.counts[frozenset((("topic", "fraction"), ("kp", "equivalent fraction")))] == 2
    # The edge table is queryable as-is.
    rows = (
        duckdb.connect()
        .execute(
            f"select weight from '{tmp_path / 'cg' / 'edges.parquet'}' "
            "where a = 'equivalent fraction' and b = 'fraction'"
        )
        .fetchall()
    )
    assert rows == [(pytest.approx(math.log(3)),)]


def test_load_missing_and_corrupt(tmp_path: Path) -> None:
    assert ConceptGraph.load(tmp_path / "nothing") is None
    (tmp_path / "members.parquet").write_text("not parquet")
    with pytest.raises(InputFileError, match="members.parquet"):
        ConceptGraph.load(tmp_path)
