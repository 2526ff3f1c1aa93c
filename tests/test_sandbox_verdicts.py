"""No program can change another program's verdict.

Each attack runs in the middle of a batch of good programs. Untrusted (the default), the good
programs after it must all return their own correct results. As a control, the same batch
runs with the attacker registered as a trusted program, so that it shares a worker with the
jobs after it: there the attack must succeed, which shows that each attack is real and that
the per-job process is what stops it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from mathsynth.verifiers.sandbox import Sandbox, SandboxJob, SandboxResult

GOOD = "def solution(n, canary):\n    return n * n + 1\n"
EVIL = "def solution(*args, **kwargs):\n    return 666\n"
FIRST_N = 70  # good jobs use n = 70, 71, ...; 77 is the small int the ctypes attack corrupts

FRAME_WALK = f"""
import sys
EVIL = {EVIL!r}
def solution(start):
    touched = 0
    frame = sys._getframe(0)
    while frame is not None:
        for value in list(frame.f_locals.values()):
            if isinstance(value, dict) and isinstance(value.get("codes"), list):
                value["codes"][:] = [EVIL] * len(value["codes"])
                touched += 1
        frame = frame.f_back
    return touched
"""

GC_OBJECTS = f"""
import gc
EVIL = {EVIL!r}
def solution(start):
    touched = 0
    for obj in gc.get_objects():
        if isinstance(obj, dict) and isinstance(obj.get("codes"), list) and "jobs" in obj:
            obj["codes"][:] = [EVIL] * len(obj["codes"])
            touched += 1
    return touched
"""

GC_REFERRERS = f"""
import gc
EVIL = {EVIL!r}
def solution(start):
    evil = compile(EVIL, "<program>", "exec")
    touched = 0
    for obj in gc.get_objects():
        # the worker's compiled-code cache, reached through the objects that refer to it
        if type(obj).__name__ == "Worker":
            for holder in gc.get_referrers(obj):
                touched += 1
            for key in list(obj._codes):
                obj._codes[key] = evil
                touched += 1
    return touched
"""

FORGED_LINES = """
import gc, json, os, socket
def solution(start):
    lines = b"".join(
        json.dumps({"i": i, "s": "ok", "r": 666, "o": "", "e": None, "l": None, "f": []}).encode()
        + b"\\n"
        for i in range(start, start + 64)
    )
    written = 0
    for obj in gc.get_objects():
        if isinstance(obj, socket.socket):
            try:
                obj.sendall(lines)
                written += 1
            except OSError:
                pass
    for fd in range(3, 256):
        try:
            os.write(fd, lines)
            written += 1
        except OSError:
            pass
    return written
"""

CTYPES_SMALL_INT = """
import ctypes
def solution(start):
    # every 77 in this interpreter now has the value 78 (CPython caches small ints)
    ctypes.c_uint32.from_address(id(77) + 24).value = 78
    return 1
"""

PATCH_BUILTINS = """
import builtins, json, math, sys
def solution(start):
    builtins.len = lambda x: 0
    builtins.int = lambda *a: 666
    math.isqrt = lambda x: 666
    json.dumps = lambda *a, **k: '{"s": "ok", "r": 666}'
    sys.modules["fractions"].Fraction = lambda *a: 666
    return 1
"""

# Reads the other jobs' data: their kwargs carry a canary string.
READ_OTHERS = """
import gc
def solution(start):
    found = set()
    def walk(value, depth):
        if isinstance(value, str):
            if value.startswith("canary-") and value[7:].isdigit():
                found.add(value)
        elif depth < 4 and isinstance(value, dict):
            for item in value.values():
                walk(item, depth + 1)
        elif depth < 4 and isinstance(value, (list, tuple)):
            for item in value:
                walk(item, depth + 1)
    for obj in gc.get_objects():
        walk(obj, 0)
    return sorted(found)
"""

ATTACKS = {
    "frame_walk": FRAME_WALK,
    "gc_objects": GC_OBJECTS,
    "gc_referrers": GC_REFERRERS,
    "forged_lines": FORGED_LINES,
    "ctypes_small_int": CTYPES_SMALL_INT,
}
AT = 1  # the attacker's position: the jobs after it would share its batch


def batch(attack: str, count: int = 24) -> list[SandboxJob]:
    jobs = [
        SandboxJob(f"g{n}", GOOD, {"n": n, "canary": f"canary-{n}"})
        for n in range(FIRST_N, FIRST_N + count)
    ]
    jobs.insert(AT, SandboxJob("attacker", attack, {"start": AT}))
    return jobs


def forged(results: list[SandboxResult]) -> list[str]:
    """The good jobs whose result is not their own correct one."""
    bad = []
    for r in results:
        if r.id == "attacker":
            continue
        n = int(r.id[1:])
        if (r.status, r.result) != ("ok", n * n + 1):
            bad.append(f"{r.id}: {r.status} {r.result!r} {r.error}")
    return bad


@pytest.fixture(scope="module")
def untrusted() -> Iterator[Sandbox]:
    with Sandbox(workers=1, timeout_s=10.0) as sb:
        yield sb


@pytest.fixture(scope="module")
def shared() -> Iterator[Sandbox]:
    """The control: attackers registered as trusted share a worker with the jobs after them."""
    programs = [GOOD, READ_OTHERS, PATCH_BUILTINS, *ATTACKS.values()]
    with Sandbox(workers=1, timeout_s=10.0, trusted_programs=programs) as sb:
        yield sb


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_an_attack_in_the_middle_of_a_batch_changes_no_other_verdict(
    untrusted: Sandbox, shared: Sandbox, name: str
) -> None:
    results = untrusted.run(batch(ATTACKS[name]))
    assert forged(results) == []
    attacker = results[AT]
    assert attacker.id == "attacker"
    if name != "forged_lines":  # its forged first line does not carry its own index
        assert attacker.status in ("ok", "killed"), attacker
    # control: sharing a process, the same attack forges the verdicts after it
    assert forged(shared.run(batch(ATTACKS[name]))) != []


def test_the_attacks_reach_their_own_process_state(untrusted: Sandbox) -> None:
    # the frame walk and the gc scan do find the worker's message: only their own is there
    walk, scan = untrusted.run(
        [SandboxJob("w", FRAME_WALK, {"start": 0}), SandboxJob("s", GC_OBJECTS, {"start": 0})]
    )
    assert (walk.status, scan.status) == ("ok", "ok"), (walk, scan)
    assert walk.result >= 1 and scan.result >= 1


def test_a_program_cannot_read_other_jobs_data(untrusted: Sandbox, shared: Sandbox) -> None:
    results = untrusted.run(batch(READ_OTHERS))
    assert results[AT].status == "ok"
    assert results[AT].result == []
    assert forged(results) == []
    # control: in a shared worker the whole batch message is in memory
    assert shared.run(batch(READ_OTHERS))[AT].result != []


def test_patched_builtins_and_modules_do_not_reach_the_next_job(untrusted: Sandbox) -> None:
    probe = (
        "import json, math\nfrom fractions import Fraction\n"
        "def solution(n, canary):\n"
        "    assert len('abc') == 3 and int('7') == 7 and math.isqrt(n * n) == n\n"
        "    assert json.dumps([1]) == '[1]' and Fraction(1, 2) + Fraction(1, 2) == 1\n"
        "    return n * n + 1\n"
    )
    jobs = batch(PATCH_BUILTINS)
    jobs = [SandboxJob(j.id, probe if j.code == GOOD else j.code, j.kwargs) for j in jobs]
    results = untrusted.run(jobs)
    # its own reply went through its patched json: its own verdict is all it spoiled
    assert results[AT].status == "killed"
    assert forged(results) == []


def test_a_fork_survivor_writing_later_changes_nothing() -> None:
    """With seccomp and per-job uids switched off (the weakest configuration) a program can
    fork; its child escapes the process group and keeps writing forged result lines to every
    descriptor it has, for longer than the jobs after it take. None of it is read."""
    survivor = """
import json, os, time
def solution(start):
    pid = os.fork()
    if pid == 0:
        os.setsid()
        line = b"".join(json.dumps({"i": i, "s": "ok", "r": 666}).encode() + b"\\n"
                        for i in range(64))
        end = time.monotonic() + 3
        while time.monotonic() < end:
            for fd in range(256):
                try:
                    os.write(fd, line)
                except OSError:
                    pass
            time.sleep(0.05)
        os._exit(0)
    return pid
"""
    import os

    saved = os.environ.get("MATHSYNTH_SANDBOX_DISABLE")
    os.environ["MATHSYNTH_SANDBOX_DISABLE"] = "root,seccomp"
    try:
        with Sandbox(workers=1, timeout_s=10.0, warn_degraded=False) as sb:
            assert not {la.name: la.active for la in sb.layers}["seccomp"]
            # forking works in this configuration: the survivor below is real
            fork = "import os\ndef solution():\n    pid = os.fork()\n    if pid == 0:\n"
            (forked,) = sb.run([SandboxJob("f", fork + "        os._exit(0)\n    return pid")])
            assert forked.status == "ok" and forked.result > 0, forked
            results = sb.run(batch(survivor))
            # its own verdict is whatever its child's lines made of it ("killed" if they came
            # first); the others' are untouched
            assert results[AT].status in ("ok", "killed")
            assert forged(results) == []
            time.sleep(1)  # the survivor is still writing
            later = [j for j in batch(GOOD) if j.id != "attacker"]
            assert forged(sb.run(later)) == []
    finally:
        if saved is None:
            os.environ.pop("MATHSYNTH_SANDBOX_DISABLE", None)
        else:
            os.environ["MATHSYNTH_SANDBOX_DISABLE"] = saved


def test_fork_is_refused_by_uid_limits_even_without_seccomp() -> None:
    import os

    saved = os.environ.get("MATHSYNTH_SANDBOX_DISABLE")
    os.environ["MATHSYNTH_SANDBOX_DISABLE"] = "seccomp"
    try:
        with Sandbox(workers=1, timeout_s=10.0, warn_degraded=False) as sb:
            if os.geteuid() != 0:
                pytest.skip("per-job uids need root")
            (r,) = sb.run([SandboxJob("f", "import os\ndef solution():\n    return os.fork()")])
    finally:
        if saved is None:
            os.environ.pop("MATHSYNTH_SANDBOX_DISABLE", None)
        else:
            os.environ["MATHSYNTH_SANDBOX_DISABLE"] = saved
    assert r.status == "error" and r.error.startswith("BlockingIOError"), r
