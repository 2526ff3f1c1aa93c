"""The MathScale concept graph: topics and knowledge points joined by co-occurrence.

Nodes are (kind, name) pairs, kind "topic" or "kp", so a name used both as a topic and as a
knowledge point stays two nodes. Every seed contributes one clique: all pairs among its topics
and knowledge points (topic–topic, topic–KP, KP–KP) gain one co-occurrence. An edge's weight is
log(1 + count): the log keeps frequent pairs from drowning the rest as in MathScale, and the
+1 keeps a pair seen once walkable (log 1 = 0 would make it unreachable).

The graph is a function of its observations (seed id → concepts), which is what gets
persisted; adding a seed id already present is a no-op, so a stored graph can be reloaded and
extended by the next build without double counting.
"""

from __future__ import annotations

import difflib
import math
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from mathsynth.storage.concept_graph_store import load_concept_graph_members, save_concept_graph

Kind = Literal["topic", "kp"]
Node = tuple[Kind, str]

# Names at least this similar (difflib ratio) are the same concept: "percents of a quantity"
# and "percent of a quantity" merge, "addition" and "subtraction" do not.
MERGE_THRESHOLD = 0.9

_PUNCTUATION = re.compile(r"[\W_]+")
_SPACES = re.compile(r"\s+")
# Words whose trailing "s" is not a plural.
_KEEP_S = {"is", "as", "has", "was", "its", "this", "gas", "plus", "minus", "bus", "yes"}


def singularize(word: str) -> str:
    """Crude English singular: enough to merge "fractions"/"fraction", "ratios"/"ratio"."""
    if len(word) <= 3 or word in _KEEP_S:
        return word
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("sses", "shes", "ches", "xes")):
        return word[:-2]
    if word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("s"):
        return word[:-1]
    return word


def normalize_concept(name: str) -> str:
    """Lowercase, punctuation to spaces, singular words, single spaces."""
    text = _PUNCTUATION.sub(" ", name.lower())
    return " ".join(singularize(w) for w in _SPACES.split(text.strip()) if w)


class ConceptNames:
    """Canonical names: normalises, then merges a name into a near-identical known one.

    The first spelling seen becomes canonical, so merging is deterministic given the order
    in which seeds are added.
    """

    def __init__(self, threshold: float = MERGE_THRESHOLD) -> None:
        self.threshold = threshold
        self._known: dict[Kind, list[str]] = {"topic": [], "kp": []}
        self._cache: dict[tuple[Kind, str], str] = {}

    def canonical(self, kind: Kind, name: str) -> str | None:
        """The canonical name for `name`, registering it if new; None for an empty name."""
        norm = normalize_concept(name)
        if not norm:
            return None
        key = (kind, norm)
        if key in self._cache:
            return self._cache[key]
        known = self._known[kind]
        match = next(
            (
                k
                for k in known
                if difflib.SequenceMatcher(None, norm, k, autojunk=False).ratio() >= self.threshold
            ),
            None,
        )
        if match is None:
            known.append(norm)
            match = norm
        self._cache[key] = match
        return match


@dataclass(frozen=True, slots=True)
class ConceptWalk:
    """A sampled concept set, in the order the walk visited it."""

    topics: tuple[str, ...]
    kps: tuple[str, ...]

    @property
    def nodes(self) -> list[Node]:
        return [*(("topic", t) for t in self.topics), *(("kp", k) for k in self.kps)]

    @property
    def concepts(self) -> list[str]:
        return [*self.topics, *self.kps]


class ConceptGraph:
    """Co-occurrence graph over topics and knowledge points of a set of seeds."""

    def __init__(self, threshold: float = MERGE_THRESHOLD) -> None:
        self.names = ConceptNames(threshold)
        self.members: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self.counts: Counter[frozenset[Node]] = Counter()
        self.node_seeds: dict[Node, list[str]] = defaultdict(list)
        self._adjacent: dict[Node, set[Node]] = defaultdict(set)

    # ------------------------------------------------------------------ building

    def add(self, seed_id: str, topics: Iterable[str], kps: Iterable[str]) -> bool:
        """Record one seed's concepts (normalised and merged); False if the seed is known."""
        if seed_id in self.members:
            return False
        canon_topics = _unique(self.names.canonical("topic", t) for t in topics)
        canon_kps = _unique(self.names.canonical("kp", k) for k in kps)
        self.members[seed_id] = (canon_topics, canon_kps)
        nodes: list[Node] = [*(("topic", t) for t in canon_topics), *(("kp", k) for k in canon_kps)]
        for node in nodes:
            self.node_seeds[node].append(seed_id)
        for i, a in enumerate(nodes):
            for b in nodes[i + 1 :]:
                self.counts[frozenset((a, b))] += 1
                self._adjacent[a].add(b)
                self._adjacent[b].add(a)
        return True

    # ------------------------------------------------------------------ reading

    @property
    def nodes(self) -> list[Node]:
        return sorted(self.node_seeds)

    def weight(self, a: Node, b: Node) -> float:
        """log(1 + co-occurrences of a and b); 0.0 when they never co-occur."""
        return math.log1p(self.counts.get(frozenset((a, b)), 0))

    def neighbors(self, node: Node, kind: Kind) -> list[Node]:
        return sorted(n for n in self._adjacent.get(node, ()) if n[0] == kind)

    def edges(self) -> list[tuple[Node, Node, int, float]]:
        """(a, b, count, weight) with a < b, sorted."""
        out = []
        for pair, count in self.counts.items():
            a, b = sorted(pair)
            out.append((a, b, count, math.log1p(count)))
        return sorted(out)

    def concepts_of(self, seed_id: str) -> list[Node]:
        topics, kps = self.members[seed_id]
        return [*(("topic", t) for t in topics), *(("kp", k) for k in kps)]

    # ------------------------------------------------------------------ sampling

    def sample_concepts(self, rng: random.Random) -> ConceptWalk:
        """Random walk as in MathScale: a start topic, 1–2 steps among topics, one step to a
        KP, then 0–4 steps among KPs; each step picks an unvisited neighbour in proportion to
        edge weight. A walk that reaches a node with no unvisited neighbour of the needed kind
        stops that phase early (small seed sets have isolated topics).

        Failure mode: raises ValueError on a graph with no topic linked to a knowledge point.
        """
        starts = [n for n in self.nodes if n[0] == "topic" and self.neighbors(n, "kp")]
        if not starts:
            raise ValueError("concept graph has no topic linked to a knowledge point")
        topics = [rng.choice(starts)]
        for _ in range(rng.randint(1, 2)):
            nxt = self._step(topics[-1], "topic", set(topics), rng)
            if nxt is None:
                break
            topics.append(nxt)
        kps: list[Node] = []
        for topic in reversed(topics):  # the last topic first; earlier ones if it has no KP
            first = self._step(topic, "kp", set(), rng)
            if first is not None:
                kps.append(first)
                break
        for _ in range(rng.randint(0, 4)):
            nxt = self._step(kps[-1], "kp", set(kps), rng)
            if nxt is None:
                break
            kps.append(nxt)
        return ConceptWalk(tuple(t[1] for t in topics), tuple(k[1] for k in kps))

    def _step(self, at: Node, kind: Kind, visited: set[Node], rng: random.Random) -> Node | None:
        options = [n for n in self.neighbors(at, kind) if n not in visited]
        if not options:
            return None
        return rng.choices(options, weights=[self.weight(at, n) for n in options])[0]

    # ------------------------------------------------------------------ persistence rows

    def member_rows(self) -> list[dict[str, Any]]:
        """One row per (seed, concept): the graph's source of truth for persistence."""
        rows = []
        for seed_id, (topics, kps) in self.members.items():
            for kind, names in (("topic", topics), ("kp", kps)):
                for position, name in enumerate(names):
                    rows.append(
                        {"seed_id": seed_id, "kind": kind, "name": name, "position": position}
                    )
        return rows

    def node_rows(self) -> list[dict[str, Any]]:
        return [
            {"kind": k, "name": n, "seeds": len(self.node_seeds[(k, n)])} for k, n in self.nodes
        ]

    def edge_rows(self) -> list[dict[str, Any]]:
        return [
            {"kind_a": a[0], "a": a[1], "kind_b": b[0], "b": b[1], "count": c, "weight": w}
            for a, b, c, w in self.edges()
        ]

    def save(self, directory: str | Path) -> None:
        """Persist the graph under `directory` (see `storage.concept_graph_store`)."""
        save_concept_graph(
            directory, members=self.member_rows(), nodes=self.node_rows(), edges=self.edge_rows()
        )

    @classmethod
    def load(cls, directory: str | Path, threshold: float = MERGE_THRESHOLD) -> ConceptGraph | None:
        """The graph stored under `directory`, or None when there is none yet.

        Failure mode: an unreadable members file raises InputFileError naming it.
        """
        rows = load_concept_graph_members(directory)
        return None if rows is None else cls.from_member_rows(rows, threshold)

    @classmethod
    def from_member_rows(
        cls, rows: Sequence[dict[str, Any]], threshold: float = MERGE_THRESHOLD
    ) -> ConceptGraph:
        """Rebuild from `member_rows()` output (any order), keeping seeds' first-seen order."""
        grouped: dict[str, dict[str, list[tuple[int, str]]]] = {}
        for row in rows:
            per_seed = grouped.setdefault(row["seed_id"], {"topic": [], "kp": []})
            per_seed[row["kind"]].append((row["position"], row["name"]))
        graph = cls(threshold)
        for seed_id, parts in grouped.items():
            graph.add(
                seed_id, [n for _, n in sorted(parts["topic"])], [n for _, n in sorted(parts["kp"])]
            )
        return graph


def _unique(names: Iterable[str | None]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for n in names if n))
