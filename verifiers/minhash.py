"""MinHash signatures of word shingles, shared by near-duplicate detection and the fuzzy
decontamination check (datasketch does the hashing, permutations and LSH banding).

Signatures must be identical in every process and on every machine, because the catalog
keeps them across builds: the shingle hash is CRC-32 of the UTF-8 shingle (Python's `hash`
is salted per process), the permutations come from a fixed seed, and the scheme is pinned
(datasketch's `affine32`, which pre-mixes the input hash, so CRC-32's weak avalanche does not
matter). CRC-32 is also about twice as fast as datasketch's default SHA-1 here.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np
from datasketch import LeanMinHash, MinHash

SCHEME = "affine32"
SEED = 1
_DTYPE = np.uint32


def _crc32(shingle: bytes) -> int:
    return zlib.crc32(shingle)


class Signer:
    """Makes `num_perm`-value signatures of shingle sets and turns stored bytes back into
    signatures. One Signer per build: it holds the permutations, which are costly to draw."""

    def __init__(self, num_perm: int = 128) -> None:
        self.num_perm = num_perm
        self._template = MinHash(num_perm=num_perm, seed=SEED, hashfunc=_crc32, scheme=SCHEME)

    @property
    def params(self) -> str:
        """What a stored signature depends on; signatures made under other params are stale."""
        return f"minhash:{SCHEME}:crc32:seed{SEED}:perm{self.num_perm}"

    def sign(self, shingles: Iterable[str]) -> LeanMinHash:
        """The signature of a set of shingles, compact (for keeping)."""
        return LeanMinHash(self.minhash(shingles))

    def minhash(self, shingles: Iterable[str]) -> MinHash:
        """The signature as datasketch's MinHash (enough for one LSH query or comparison)."""
        m = MinHash(
            num_perm=self.num_perm,
            seed=SEED,
            hashfunc=_crc32,
            permutations=self._template.permutations,
            scheme=SCHEME,
        )
        encoded = [s.encode("utf-8") for s in set(shingles)]
        if encoded:
            m.update_batch(encoded)
        return m

    def to_bytes(self, signature: LeanMinHash) -> bytes:
        return np.asarray(signature.hashvalues, dtype=_DTYPE).tobytes()

    def from_bytes(self, blob: bytes) -> LeanMinHash:
        """Failure modes: ValueError when `blob` is not a signature of this Signer's size."""
        return self.from_values(np.frombuffer(blob, dtype=_DTYPE))

    def from_values(self, values: np.ndarray) -> LeanMinHash:
        """Failure modes: ValueError when `values` is not a signature of this Signer's size."""
        if len(values) != self.num_perm:
            raise ValueError(f"signature has {len(values)} values, expected {self.num_perm}")
        return LeanMinHash(seed=SEED, hashvalues=values, scheme=SCHEME)
