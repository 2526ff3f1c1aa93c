"""The request cache under concurrent writers: two processes and two threads."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

from mathsynth.generators.llm.cache import CachedSample, CacheError, RequestCache


def _sample(key: str, text: str = "t") -> CachedSample:
    return CachedSample(key, "m", text, "stop", None, 1, 2, 0.5)


def _writer(path: str, tag: str, count: int) -> None:
    cache = RequestCache(path)
    for i in range(count):
        # Every writer also writes the shared keys: the first answer stored must win.
        cache.put_many([_sample(f"{tag}-{i}"), _sample(f"shared-{i}", tag)])
    cache.close()


def test_two_processes_and_two_threads_write_one_file(tmp_path: Path) -> None:
    path = tmp_path / "llm_cache.sqlite"
    RequestCache(path).close()
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(path), f"p{i}", 150)) for i in range(2)]
    threads = [threading.Thread(target=_writer, args=(str(path), f"t{i}", 150)) for i in range(2)]
    for worker in [*procs, *threads]:
        worker.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    for t in threads:
        t.join(60)
    cache = RequestCache(path)
    assert len(cache) == 4 * 150 + 150
    shared = cache.get_many(f"shared-{i}" for i in range(150))
    assert len(shared) == 150 and {s.text for s in shared.values()} <= {"p0", "p1", "t0", "t1"}
    got = cache.get_many(["p0-3", "t1-149", "missing"])
    assert set(got) == {"p0-3", "t1-149"} and got["p0-3"] == _sample("p0-3")
    cache.close()


def test_entries_are_immutable_and_lookups_chunk(tmp_path: Path) -> None:
    cache = RequestCache(tmp_path / "c.sqlite")
    cache.put_many(_sample(f"k{i}") for i in range(1200))
    cache.put_many([_sample("k1", "different")])
    found = cache.get_many(f"k{i}" for i in range(1200))
    assert len(found) == 1200 and found["k1"].text == "t"
    cache.close()


def test_not_a_cache_file_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "cache.sqlite"
    bogus.write_bytes(b"this is not sqlite at all" * 100)
    with pytest.raises(CacheError, match="cannot open LLM request cache"):
        RequestCache(bogus)
