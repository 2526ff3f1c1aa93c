"""What makes a finished build fit to publish, beyond exact dedup: benchmark decontamination
(set up before the seeds are read) and near-duplicate removal (after the last batch).

The logic lives in `verifiers.decontam` and `verifiers.neardup`, the file I/O in `storage`;
this module joins them for one build.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

from mathsynth.config import BuildConfig
from mathsynth.registry import StageContext
from mathsynth.storage.benchmarks import Benchmark, read_benchmark
from mathsynth.storage.catalog import Catalog
from mathsynth.storage.dedup import drop_sft_rows, sft_questions
from mathsynth.verifiers.decontam import ContaminationIndex
from mathsynth.verifiers.neardup import NearDupDetector

NEAR_DUP_REASON = "near_duplicate"
# Signatures are read from and added to the catalog this many rows at a time, each time on a
# short connection of its own (another process, such as `mathsynth stats`, waits briefly).
_CHUNK = 20_000


def _shard_groups(
    shards: Iterator[tuple[int, list[str], list[str]]],
) -> Iterator[list[tuple[int, list[str], list[str]]]]:
    """Consecutive shards in groups of about `_CHUNK` rows."""
    group: list[tuple[int, list[str], list[str]]] = []
    rows = 0
    for shard in shards:
        group.append(shard)
        rows += len(shard[1])
        if rows >= _CHUNK:
            yield group
            group, rows = [], 0
    if group:
        yield group


def read_benchmarks(config: BuildConfig) -> list[Benchmark]:
    """The benchmarks `config.decontaminate` names, read whole.

    Failure modes: InputFileError (one line, naming the source) for a benchmark that cannot
    be read or holds no question / problem text; see `storage.benchmarks.read_benchmark`.
    """
    return [read_benchmark(source) for source in config.decontaminate.sources]


def contamination_index(config: BuildConfig) -> tuple[ContaminationIndex | None, dict[str, Any]]:
    """The build's decontamination index (None when no benchmark is named) and the report
    of what it holds (benchmarks, item counts, method parameters)."""
    benchmarks = read_benchmarks(config)
    if not benchmarks:
        return None, {}
    settings = config.decontaminate
    index = ContaminationIndex(
        [(b.name, b.items) for b in benchmarks],
        ngram=settings.ngram,
        min_words=settings.min_words,
        fuzzy_threshold=settings.fuzzy_threshold,
        fuzzy_ngram=settings.fuzzy_ngram,
        num_perm=settings.num_perm,
    )
    report = index.describe()
    for entry, benchmark in zip(report["benchmarks"], benchmarks, strict=True):
        entry.update(source=benchmark.source, skipped_rows=benchmark.skipped)
    return index, report


def drop_near_duplicates(ctx: StageContext, catalog: Catalog) -> dict[str, Any]:
    """Drop near-duplicate sft rows of the whole dataset (`verifiers.neardup`'s rule) into
    `rejected/` (reason `near_duplicate`, naming the kept twin), with the pairs and
    statements made from them; returns the figures for the report and the card.

    Signatures are kept in the catalog by row id, so rows of earlier builds (or of batches
    a crashed build finished) are signed once. Memory: the ids and band keys of every row
    (~130 bytes a row), the signatures of the rows that share a band with another row
    (512 bytes each), and datasketch's index for one component of those at a time.
    """
    settings = ctx.config.near_dup
    figures: dict[str, Any] = {
        "enabled": settings.enabled,
        "threshold": settings.threshold,
        "ngram": settings.ngram,
        "num_perm": settings.num_perm,
    }
    if not settings.enabled:
        return figures
    started = time.perf_counter()
    detector = NearDupDetector(settings.threshold, settings.ngram, settings.num_perm)
    ids: list[str] = []
    shards: list[int] = []
    keys: list[np.ndarray] = []
    signed = 0
    for group in _shard_groups(sft_questions(ctx.out)):
        group_ids = [row_id for _, shard_ids, _ in group for row_id in shard_ids]
        with catalog.signature_store(detector.params) as store:
            stored = store.get(group_ids)
        new_ids, new_blobs = [], []
        for shard, shard_ids, questions in group:
            matrix = np.empty((len(shard_ids), settings.num_perm), dtype=np.uint32)
            for i, (row_id, question) in enumerate(zip(shard_ids, questions, strict=True)):
                blob = stored.get(row_id)
                if blob is None:
                    matrix[i] = detector.signature(question)
                    new_ids.append(row_id)
                    new_blobs.append(matrix[i].tobytes())
                else:
                    matrix[i] = np.frombuffer(blob, dtype=np.uint32)
            keys.append(detector.band_keys(matrix))
            ids.extend(shard_ids)
            shards.extend([shard] * len(shard_ids))
        # Signing happens between two short connections, not inside one.
        with catalog.signature_store(detector.params) as store:
            store.put(new_ids, new_blobs)
        signed += len(new_ids)
    all_keys = np.concatenate(keys) if keys else np.empty((0, detector.bands), np.uint64)
    candidates = np.flatnonzero(detector.shared_band(all_keys))
    candidate_ids = [ids[i] for i in candidates]
    matrix = np.empty((len(candidate_ids), settings.num_perm), dtype=np.uint32)
    for start in range(0, len(candidate_ids), _CHUNK):
        chunk = candidate_ids[start : start + _CHUNK]
        with catalog.signature_store(detector.params) as store:
            stored = store.get(chunk)
        for i, row_id in enumerate(chunk, start):
            matrix[i] = np.frombuffer(stored[row_id], dtype=np.uint32)
    found = detector.near_duplicates(candidate_ids, matrix, all_keys[candidates])
    shard_of = {ids[i]: shards[i] for i in candidates}
    drops: dict[int, dict[str, str]] = defaultdict(dict)
    for dup in found:
        drops[shard_of[dup.id]][dup.id] = (
            f"is a near duplicate of row {dup.twin}, which is kept (estimated Jaccard "
            f"{dup.similarity:.2f} of word {settings.ngram}-grams, threshold {settings.threshold})"
        )
    dropped = drop_sft_rows(ctx.out, catalog, drops, NEAR_DUP_REASON)
    figures.update(
        rows_checked=len(ids),
        candidates=len(candidate_ids),
        dropped=dropped,
        signatures_computed=signed,
        signatures_reused=len(ids) - signed,
        seconds=round(time.perf_counter() - started, 2),
    )
    return figures
