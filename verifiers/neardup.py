"""Near-duplicate questions: MinHash-LSH over word n-gram shingles of the normalised question.

Rows are judged in a fixed order (shard number, then row order), greedily: a row whose
estimated Jaccard similarity to an earlier *kept* row reaches the threshold is a near
duplicate of the most similar such row (ties: the earliest), otherwise it is kept. The result
depends only on the rows and their order, never on timing, so a resumed build, a rerun or a
build made in one go drop the same rows; and dropping a row never changes a later decision
(dropped rows are never compared against), so rerunning on the survivors drops nothing.

LSH candidates are rows that share a whole band of signature values (datasketch picks the
bands for the threshold, weighted for recall: `mathsynth.config.LSH_WEIGHTS`). Most rows
share no band with any other row; `shared_band` finds those cheaply from one array of band
keys, so datasketch's index (a few KB per row) only ever holds the rows that can have a near
duplicate at all. The result is the same as indexing
every row: a row that shares no band is never a candidate of anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from datasketch import LeanMinHash, MinHashLSH

from mathsynth.config import lsh_bands
from mathsynth.text import word_ngrams, words
from mathsynth.verifiers.minhash import Signer

# Odd 64-bit multipliers that fold one band's values into one key (a collision only adds a
# candidate, which the Jaccard estimate then rejects).
_FOLD = np.random.default_rng(20240601).integers(1, 2**63, size=256, dtype=np.uint64) | 1


@dataclass(frozen=True, slots=True)
class NearDuplicate:
    id: str
    twin: str
    similarity: float


class NearDupDetector:
    """Signatures, band keys and the greedy pass for one (threshold, ngram, num_perm)."""

    def __init__(self, threshold: float = 0.8, ngram: int = 5, num_perm: int = 128) -> None:
        self.threshold = threshold
        self.ngram = ngram
        self.signer = Signer(num_perm)
        self.bands, self.rows_per_band = lsh_bands(threshold, num_perm)

    @property
    def params(self) -> str:
        """What a stored signature depends on (the threshold does not change signatures)."""
        return f"{self.signer.params}:words{self.ngram}"

    def signature(self, question: str) -> np.ndarray:
        """The question's signature values (uint32, `num_perm` of them)."""
        shingles = word_ngrams(words(question), self.ngram)
        return np.asarray(self.signer.sign(shingles).hashvalues, dtype=np.uint32)

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """One uint64 key per (row, band) of an (n, num_perm) signature matrix."""
        r = self.rows_per_band
        keys = np.empty((len(signatures), self.bands), dtype=np.uint64)
        values = signatures.astype(np.uint64)
        with np.errstate(over="ignore"):  # wraparound is the hash
            for band in range(self.bands):
                part = values[:, band * r : (band + 1) * r]
                keys[:, band] = (part * _FOLD[:r]).sum(axis=1, dtype=np.uint64) + np.uint64(band)
        return keys

    @staticmethod
    def shared_band(keys: np.ndarray) -> np.ndarray:
        """Boolean mask of the rows that share at least one band key with another row."""
        mask = np.zeros(len(keys), dtype=bool)
        for band in range(keys.shape[1]):
            _, inverse, counts = np.unique(keys[:, band], return_inverse=True, return_counts=True)
            mask |= counts[inverse] > 1
        return mask

    @staticmethod
    def components(keys: np.ndarray) -> np.ndarray:
        """For each row, the lowest row index of its connected component in the graph whose
        edges join rows sharing a band key (minimum-label propagation, vectorised)."""
        n = len(keys)
        labels = np.arange(n)
        groups = []
        for band in range(keys.shape[1]):
            order = np.argsort(keys[:, band], kind="stable")
            starts = np.flatnonzero(np.r_[True, np.diff(keys[order, band]) != 0])
            groups.append((order, starts))
        changed = n > 0
        while changed:
            changed = False
            for order, starts in groups:
                lowest = np.minimum.reduceat(labels[order], starts)
                spread = np.repeat(lowest, np.diff(np.r_[starts, n]))
                better = spread < labels[order]
                if better.any():
                    labels[order[better]] = spread[better]
                    changed = True
        return labels

    def near_duplicates(
        self, ids: Sequence[str], signatures: np.ndarray, keys: np.ndarray
    ) -> list[NearDuplicate]:
        """The greedy pass over rows given in their fixed order, one connected component of
        the band graph at a time: a row is only ever compared with rows of its own component
        (no other row shares a band with it), so the result equals one pass over all rows,
        and datasketch's index never holds more than one component."""
        labels = self.components(keys)
        order = np.argsort(labels, kind="stable")  # by component; row order inside each
        cuts = np.flatnonzero(np.diff(labels[order])) + 1
        found: list[tuple[int, NearDuplicate]] = []
        for group in np.split(order, cuts):
            if len(group) < 2:
                continue
            dups = self.resolve([ids[i] for i in group], signatures[group])
            where = {ids[i]: int(i) for i in group}
            found.extend((where[d.id], d) for d in dups)
        return [d for _, d in sorted(found, key=lambda pair: pair[0])]

    def resolve(self, ids: Sequence[str], signatures: np.ndarray) -> list[NearDuplicate]:
        """The greedy pass (module docstring) over rows given in their fixed order."""
        lsh = MinHashLSH(
            threshold=self.threshold,
            num_perm=self.signer.num_perm,
            params=(self.bands, self.rows_per_band),
        )
        kept: dict[str, tuple[int, LeanMinHash]] = {}
        found: list[NearDuplicate] = []
        for position, (row_id, values) in enumerate(zip(ids, signatures, strict=True)):
            sig = self.signer.from_values(values)
            best: tuple[float, int, str] | None = None
            for key in lsh.query(sig):
                order, other = kept[key]
                similarity = sig.jaccard(other)
                if similarity >= self.threshold and (
                    best is None or (similarity, -order) > (best[0], -best[1])
                ):
                    best = (similarity, order, key)
            if best is not None:
                found.append(NearDuplicate(row_id, best[2], best[0]))
                continue
            if row_id in kept:  # the same row twice (cannot happen after exact dedup)
                continue
            lsh.insert(row_id, sig, check_duplication=False)
            kept[row_id] = (position, sig)
        return found
