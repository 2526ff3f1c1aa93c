"""Decontamination: is a question (a seed, or a generated problem) a benchmark test item?

Three methods, each reported on its own:

- `ngram`: a word 13-gram shared with a benchmark item, on normalised text (lowercase, NFKC,
  punctuation dropped: `mathsynth.text.words`), as GPT-3 and lm-evaluation-harness check;
- `masked_ngram`: the same with every number masked (`mathsynth.text.masked_words`), so a
  copy of a test item with its numbers changed (what GSM8K+ / MATH+ and InfinityMATH's
  instantiation make) is caught;
- `fuzzy`: MinHash-LSH on word shingles of the masked text, estimated Jaccard similarity at
  or above a threshold, for copies with a few words changed as well.

A benchmark item shorter than 13 words is matched by all its words in a row (as one n-gram of
its own length) when it has at least `min_words` (8, GPT-3's lower bound), and only as the
whole text otherwise: a 3-word item such as "Compute dbinom <n>" would otherwise flag every
text that contains those words.

Where a text matches several items, each method reports the first item it matches in the
order the benchmarks were given and their rows, so the verdict is deterministic.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from datasketch import MinHashLSH

from mathsynth.config import lsh_bands
from mathsynth.records import Problem, Record, Rejection
from mathsynth.seeds import Seed
from mathsynth.stage import RecordStage
from mathsynth.text import mask_numbers, masked_words, word_ngrams, words
from mathsynth.verifiers.minhash import Signer

METHODS = ("ngram", "masked_ngram", "fuzzy")
METHOD_LABELS = {
    "ngram": "word n-gram overlap",
    "masked_ngram": "word n-gram overlap with numbers masked",
    "fuzzy": "MinHash similarity of the masked text",
}
STAGE = "decontaminate"
REASON = "contaminated"

# (benchmark position, item position)
_Item = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Hit:
    benchmark: str
    item_id: str
    similarity: float = 1.0


@dataclass(frozen=True)
class Contamination:
    """What matched a text: per method that matched, the benchmark item it matched."""

    hits: dict[str, Hit]

    @property
    def first(self) -> Hit:
        return next(self.hits[m] for m in METHODS if m in self.hits)

    def detail(self) -> str:
        first = self.first
        methods = []
        for method in METHODS:
            hit = self.hits.get(method)
            if hit is None:
                continue
            what = method if hit == first else f"{method}: {hit.benchmark} item {hit.item_id}"
            if method == "fuzzy":
                what += f" (Jaccard {hit.similarity:.2f})"
            methods.append(what)
        return (
            f"matches item {first.item_id} of benchmark {first.benchmark} "
            f"(methods: {', '.join(methods)})"
        )


def _grams(tokens: list[str], n: int) -> Iterator[tuple[str, ...]]:
    """The n-word windows of `tokens` as tuples (built by `zip` in C: this is the hot loop)."""
    return zip(*(tokens[k:] for k in range(n)), strict=False)


@dataclass
class _Grams:
    """One method's n-gram lookup: the n-grams of items with at least n words; items with
    `min_words` to n - 1 words, found through their first `min_words` words; and the whole
    text of items too short for either. Keys are word tuples."""

    n: int
    min_words: int
    full: dict[tuple[str, ...], _Item] = field(default_factory=dict)
    short: dict[tuple[str, ...], list[tuple[tuple[str, ...], _Item]]] = field(default_factory=dict)
    whole: dict[tuple[str, ...], _Item] = field(default_factory=dict)

    def add(self, tokens: list[str], item: _Item) -> None:
        if len(tokens) >= self.n:
            for gram in _grams(tokens, self.n):
                self.full.setdefault(gram, item)
        elif len(tokens) >= self.min_words:
            self.short.setdefault(tuple(tokens[: self.min_words]), []).append((tuple(tokens), item))
        elif tokens:
            self.whole.setdefault(tuple(tokens), item)

    def find(self, tokens: list[str]) -> _Item | None:
        found = [self.full[g] for g in self.full.keys() & _grams(tokens, self.n)]
        if self.short:
            for start, gram in enumerate(_grams(tokens, self.min_words)):
                for item_tokens, item in self.short.get(gram, ()):
                    if tuple(tokens[start : start + len(item_tokens)]) == item_tokens:
                        found.append(item)
        item = self.whole.get(tuple(tokens))
        if item is not None:
            found.append(item)
        return min(found) if found else None


class ContaminationIndex:
    """The benchmarks of one build, indexed for the three methods (module docstring).

    `benchmarks` is a sequence of (name, items) with items (item id, text) pairs, such as
    `storage.benchmarks.Benchmark` objects' `.name` / `.items`.
    """

    def __init__(
        self,
        benchmarks: Sequence[tuple[str, Sequence[tuple[str, str]]]],
        *,
        ngram: int = 13,
        min_words: int = 8,
        fuzzy_threshold: float = 0.6,
        fuzzy_ngram: int = 3,
        num_perm: int = 128,
    ) -> None:
        self.names = [name for name, _ in benchmarks]
        self.sizes = [len(items) for _, items in benchmarks]
        self.ngram, self.min_words = ngram, min_words
        self.fuzzy_threshold, self.fuzzy_ngram = fuzzy_threshold, fuzzy_ngram
        self._ids = [[item_id for item_id, _ in items] for _, items in benchmarks]
        self._plain, self._masked = _Grams(ngram, min_words), _Grams(ngram, min_words)
        self._signer = Signer(num_perm)
        self._lsh = MinHashLSH(
            threshold=fuzzy_threshold,
            num_perm=num_perm,
            params=lsh_bands(fuzzy_threshold, num_perm),
        )
        self._signatures: dict[_Item, Any] = {}
        for b, (_, items) in enumerate(benchmarks):
            for i, (_, text) in enumerate(items):
                item = (b, i)
                masked = masked_words(text)
                self._plain.add(words(text), item)
                self._masked.add(masked, item)
                if item_shingles := word_ngrams(masked, fuzzy_ngram):
                    signature = self._signer.sign(item_shingles)
                    self._lsh.insert(item, signature, check_duplication=False)
                    self._signatures[item] = signature

    def _hit(self, item: _Item, similarity: float = 1.0) -> Hit:
        b, i = item
        return Hit(self.names[b], self._ids[b][i], similarity)

    def check(self, text: str) -> Contamination | None:
        """Which methods match `text` to which item; None when it is clean."""
        hits: dict[str, Hit] = {}
        tokens = words(text)
        plain = self._plain.find(tokens)
        if plain is not None:
            hits["ngram"] = self._hit(plain)
        masked = mask_numbers(tokens)
        found = self._masked.find(masked)
        if found is not None:
            hits["masked_ngram"] = self._hit(found)
        if shingles := word_ngrams(masked, self.fuzzy_ngram):
            signature = self._signer.minhash(shingles)
            best: tuple[float, _Item] | None = None
            for item in self._lsh.query(signature):
                similarity = signature.jaccard(self._signatures[item])
                if similarity >= self.fuzzy_threshold and (
                    best is None or (similarity, _neg(item)) > (best[0], _neg(best[1]))
                ):
                    best = (similarity, item)
            if best is not None:
                hits["fuzzy"] = self._hit(best[1], best[0])
        return Contamination(hits) if hits else None

    def describe(self) -> dict[str, Any]:
        """The benchmarks and parameters, for reports and the dataset card."""
        return {
            "benchmarks": [
                {"name": n, "items": s} for n, s in zip(self.names, self.sizes, strict=True)
            ],
            "methods": {
                "ngram": {"n": self.ngram, "min_words": self.min_words},
                "masked_ngram": {"n": self.ngram, "min_words": self.min_words},
                "fuzzy": {"threshold": self.fuzzy_threshold, "shingle_words": self.fuzzy_ngram},
            },
        }


def _neg(item: _Item) -> tuple[int, int]:
    return (-item[0], -item[1])


def count_hit(stats: dict[str, int] | Any, found: Contamination) -> None:
    """Add one contaminated text to `stats` counters: `hit:<method>` and
    `hit:<method>:<benchmark>` per matching method, `benchmark:<name>` for the reported one."""
    for method, hit in found.hits.items():
        stats[f"hit:{method}"] = stats.get(f"hit:{method}", 0) + 1
        key = f"hit:{method}:{hit.benchmark}"
        stats[key] = stats.get(key, 0) + 1
    key = f"benchmark:{found.first.benchmark}"
    stats[key] = stats.get(key, 0) + 1


class Decontaminate(RecordStage):
    """Problems whose question matches a benchmark item become `contaminated` rejections
    naming the benchmark, the item id and the methods; everything else passes through."""

    name = STAGE

    def __init__(self, index: ContaminationIndex) -> None:
        super().__init__()
        self.index = index

    def run(self, records: Iterable[Record]) -> Iterator[Record]:
        for record in records:
            if isinstance(record, Problem):
                self.stat_update("checked")
                found = self.index.check(record.question)
                if found is not None:
                    count_hit(self.stats, found)
                    yield self.reject(record.to_row(), REASON, found.detail())
                    continue
            yield record


def decontaminate_seeds(
    index: ContaminationIndex, seeds: Sequence[Seed]
) -> tuple[list[Seed], list[Rejection], dict[str, int]]:
    """Split seeds into the clean ones and `contaminated` rejections (stage `decontaminate`),
    before any generator sees them; also returns the hit counters (`count_hit`)."""
    kept: list[Seed] = []
    rejected: list[Rejection] = []
    stats: dict[str, int] = {"checked": len(seeds)}
    for seed in seeds:
        found = index.check(seed.question)
        if found is None:
            kept.append(seed)
            continue
        count_hit(stats, found)
        record = {
            "id": seed.id,
            "question": seed.question,
            "answer": seed.answer,
            "source": seed.source,
            "line": seed.line,
        }
        rejected.append(Rejection(STAGE, REASON, f"seed {seed.id} {found.detail()}", record))
    return kept, rejected, stats
