"""The REPL backend against a stand-in REPL process (tests/fake_lean_repl.py): the protocol,
header reuse, timeouts, crashes, garbage, restarts, recycling, the memory cap and the pool."""

from __future__ import annotations

import logging
import re
import shlex
import sys
import threading
from pathlib import Path

import pytest

from mathsynth.config import LeanSettings
from mathsynth.errors import ConfigError
from mathsynth.verifiers.lean import (
    KiminaBackend,
    LeanItem,
    ReplBackend,
    describe_lean_backend,
    make_lean_backend,
)

FAKE = [sys.executable, str(Path(__file__).with_name("fake_lean_repl.py"))]


def _backend(*args: str, **kwargs: object) -> ReplBackend:
    options: dict[str, object] = {"timeout_s": 2.0, "start_timeout_s": 10.0, "memory_mb": 512}
    options.update(kwargs)
    return ReplBackend([*FAKE, *args], **options)  # type: ignore[arg-type]


def _pid_env(message: str) -> tuple[int, str]:
    match = re.search(r"pid=(\d+) env=(\S+)", message)
    assert match, message
    return int(match.group(1)), match.group(2)


def test_statuses_come_back_in_order() -> None:
    items = [
        LeanItem("ok", "theorem a : (2 : ℚ) + 2 = (4 : ℚ) := by norm_num"),
        LeanItem("wrong", "theorem b : (2 : ℚ) + 2 = (5 : ℚ) := by norm_num"),
        LeanItem("sorry", "theorem c : (1 : ℕ) = 1 := by sorry"),
        LeanItem("error", "FAKE_ERROR"),
    ]
    with _backend() as backend:
        results = backend.check(items)
    assert [r.id for r in results] == ["ok", "wrong", "sorry", "error"]
    assert [r.status for r in results] == ["proved", "failed", "compiled", "failed"]
    assert results[1].messages[0].startswith("error 1:0: unsolved goals")
    assert results[2].messages == ["warning 1:0: declaration uses 'sorry'"]


def test_header_runs_once_and_its_env_is_reused() -> None:
    with _backend() as backend:
        results = backend.check([LeanItem(str(i), "FAKE_PID") for i in range(3)])
        assert backend.starts == 1
    pids_envs = {_pid_env(r.messages[0]) for r in results}
    # One process; every command ran in env 0, the header's environment.
    assert len(pids_envs) == 1
    assert next(iter(pids_envs))[1] == "0"


def test_empty_header_sends_commands_without_env() -> None:
    with _backend(header="") as backend:
        (result,) = backend.check([LeanItem("a", "FAKE_PID")])
    assert _pid_env(result.messages[0])[1] == "None"


def test_hang_times_out_as_failed_and_the_repl_is_restarted() -> None:
    with _backend(timeout_s=0.5) as backend:
        first = backend.check([LeanItem("before", "FAKE_PID")])
        # FAKE_HANG sleeps an hour: only the timeout ends it (else pytest-timeout fails this)
        hang, after = backend.check([LeanItem("hang", "FAKE_HANG"), LeanItem("after", "FAKE_PID")])
        assert backend.starts == 2
    assert hang.status == "failed"
    assert hang.messages == ["error: lean repl timed out after 0.5s"]
    assert after.status == "proved"
    assert _pid_env(first[0].messages[0])[0] != _pid_env(after.messages[0])[0]


def test_crash_marks_the_item_unchecked_with_the_reason_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="mathsynth.lean"), _backend() as backend:
        crash, after = backend.check([LeanItem("c", "FAKE_CRASH"), LeanItem("a", "ok")])
    assert crash.status == "unchecked"
    assert crash.messages == ["unchecked: lean repl exited (code 1): fake: PANIC at the disco"]
    assert after.status == "proved"
    assert backend.disabled_reason is None
    assert sum("PANIC" in r.getMessage() for r in caplog.records) == 1


def test_garbage_output_marks_the_item_unchecked() -> None:
    with _backend() as backend:
        garbage, after = backend.check([LeanItem("g", "FAKE_GARBAGE"), LeanItem("a", "ok")])
    assert garbage.status == "unchecked"
    assert "non-JSON output: 'uh-oh, this is not JSON'" in garbage.messages[0]
    assert after.status == "proved"


def test_repeated_faults_disable_the_backend() -> None:
    items = [LeanItem(str(i), "FAKE_CRASH") for i in range(3)] + [LeanItem("ok", "fine")]
    with _backend(max_faults=3) as backend:
        results = backend.check(items)
    assert [r.status for r in results] == ["unchecked"] * 4
    assert "failed 3 times in a row" in results[3].messages[0]


def test_memory_cap_kills_a_greedy_repl() -> None:
    with _backend(memory_mb=300) as backend:
        greedy, after = backend.check([LeanItem("m", "FAKE_MEMORY"), LeanItem("a", "ok")])
    assert greedy.status == "unchecked"
    assert "MemoryError" in greedy.messages[0]
    assert after.status == "proved"


def test_recycling_after_n_commands() -> None:
    with _backend(recycle_after=2) as backend:
        results = backend.check([LeanItem(str(i), "FAKE_PID") for i in range(5)])
        assert backend.starts == 3
    pids = [_pid_env(r.messages[0])[0] for r in results]
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4]


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["/nonexistent/lean-repl"], "lean repl command not found: '/nonexistent/lean-repl'"),
        ([*FAKE, "--fail-start"], "fake: cannot find the Lean toolchain"),
        ([*FAKE, "--header-error"], "lean header failed: unknown package 'Mathlib'"),
        ([*FAKE, "--banner"], "non-JSON output: 'Lean REPL (fake) starting up'"),
    ],
)
def test_a_repl_that_does_not_start_leaves_every_row_unchecked(
    argv: list[str], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = ReplBackend(argv, timeout_s=2.0, start_timeout_s=10.0)
    with caplog.at_level(logging.ERROR, logger="mathsynth.lean"), backend:
        results = backend.check([LeanItem(str(i), "ok") for i in range(4)])
        again = backend.check([LeanItem("later", "ok")])
    for result in [*results, *again]:
        assert result.status == "unchecked"
        assert reason in result.messages[0]
    # One clear error, not one per row.
    assert len([r for r in caplog.records if "disabled" in r.getMessage()]) == 1


def test_pool_runs_items_in_parallel_and_is_thread_safe() -> None:
    with _backend(pool_size=2) as backend:
        outputs: list[list[str]] = []

        def worker() -> None:
            results = backend.check([LeanItem(str(i), "FAKE_PID") for i in range(6)])
            outputs.append([r.status for r in results])

        threads = [threading.Thread(target=worker) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert backend.starts == 2
    assert outputs == [["proved"] * 6] * 3


def test_make_lean_backend_from_settings() -> None:
    assert make_lean_backend(LeanSettings()) is None
    repl = make_lean_backend(LeanSettings(repl_cmd=shlex.join(FAKE), pool_size=2, timeout_s=5))
    assert isinstance(repl, ReplBackend)
    assert repl.pool_size == 2
    (result,) = repl.check([LeanItem("a", "ok")])
    repl.close()
    assert result.status == "proved"
    server = make_lean_backend(LeanSettings(server_url="http://127.0.0.1:1/"))
    assert isinstance(server, KiminaBackend)
    assert server.url == "http://127.0.0.1:1"
    with pytest.raises(ConfigError, match="not both"):
        make_lean_backend(LeanSettings(repl_cmd="repl", server_url="http://x"))


def test_describe_lean_backend() -> None:
    assert describe_lean_backend(LeanSettings())[:2] == ("none", False)
    name, ok, detail = describe_lean_backend(LeanSettings(repl_cmd=shlex.join(FAKE)))
    assert (name, ok) == ("repl", True)
    assert "answers JSON commands" in detail
    name, ok, detail = describe_lean_backend(LeanSettings(repl_cmd="/nonexistent/repl"))
    assert (name, ok) == ("repl", False)
    assert "not found" in detail
