"""Functional tests of the sandbox pool: results, locals, checks, order, timeouts, recycling."""

from __future__ import annotations

import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path

import pytest

from mathsynth.verifiers.sandbox import Sandbox, SandboxJob, isolation_report
from mathsynth.verifiers.sandbox.codec import UnsafeValueError, decode, encode, to_safe


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    with Sandbox(workers=2, timeout_s=2.0, memory_mb=768) as sb:
        yield sb


def run_one(sb: Sandbox, code: str, **kw: object) -> object:
    (result,) = sb.run([SandboxJob(id="j", code=code, **kw)])  # type: ignore[arg-type]
    return result


def test_solution_result_locals_and_checks(sandbox: Sandbox) -> None:
    job = SandboxJob(
        id="a",
        code="def solution(x):\n    y = x * 2\n    return y + 1",
        kwargs={"x": 3},
        capture_locals=True,
        checks=["y > 0", "y < 0", "answer == 7", "undefined_name > 1"],
    )
    (r,) = sandbox.run([job])
    assert (r.id, r.status, r.result, r.error) == ("a", "ok", 7, None)
    assert r.locals == {"x": 3, "y": 6}
    assert r.failed_checks == ["y < 0", "undefined_name > 1"]
    assert not r.ok


def test_locals_keep_only_numbers_and_strings_at_the_return_taken(sandbox: Sandbox) -> None:
    code = (
        "from fractions import Fraction\n"
        "def solution(n):\n"
        "    items = [1, 2]\n"
        "    half = Fraction(n, 2)\n"
        "    label = 'x'\n"
        "    if n > 2:\n"
        "        big = True\n"
        "        return half\n"
        "    return 0\n"
    )
    r = run_one(sandbox, code, kwargs={"n": 5}, capture_locals=True)
    assert r.result == Fraction(5, 2)
    assert r.locals == {"n": 5, "half": Fraction(5, 2), "label": "x", "big": True}


def test_result_types_cross_the_pipe_exactly(sandbox: Sandbox) -> None:
    code = (
        "import sympy\n"
        "def solution(q):\n"
        "    x = sympy.Symbol('x')\n"
        "    return {'frac': q * 2, 'rat': sympy.Rational(3, 4), 'int': sympy.Integer(2)**70,\n"
        "            'float': 0.5, 'expr': sympy.sqrt(2) * x, 'tuple': (1, 'a', None),\n"
        "            '$odd': True, 'root': sympy.solve(x**2 - 9, x)}\n"
    )
    r = run_one(sandbox, code, kwargs={"q": Fraction(1, 3)})
    assert r.status == "ok", r.error
    assert r.result == {
        "frac": Fraction(2, 3),
        "rat": Fraction(3, 4),
        "int": 2**70,
        "float": 0.5,
        "expr": "sqrt(2)*x",
        "tuple": [1, "a", None],
        "$odd": True,
        "root": [-3, 3],
    }
    assert type(r.result["int"]) is int


def test_program_without_solution_just_runs_and_prints(sandbox: Sandbox) -> None:
    r = run_one(sandbox, "for i in range(3):\n    print(i)\nimport sys\nsys.exit(0)")
    assert (r.status, r.result, r.stdout) == ("ok", None, "0\n1\n2\n")


@pytest.mark.parametrize(
    ("code", "error"),
    [
        ("1/0", "ZeroDivisionError: division by zero"),
        ("def solution(:\n  pass", "SyntaxError"),
        ("raise SystemExit(3)", "SystemExit: 3"),
        ("def solution(x):\n    return x", "TypeError: solution() missing"),
    ],
)
def test_errors_are_type_and_message(sandbox: Sandbox, code: str, error: str) -> None:
    r = run_one(sandbox, code)
    assert r.status == "error"
    assert r.error.startswith(error)


def test_unencodable_kwargs_and_results_are_errors_not_crashes(sandbox: Sandbox) -> None:
    bad_kwargs, huge = sandbox.run(
        [
            SandboxJob(id="k", code="pass", kwargs={"x": object()}),
            SandboxJob(id="h", code="def solution():\n    return 10**5000"),
        ]
    )
    assert bad_kwargs.status == "error" and "kwargs" in bad_kwargs.error
    assert huge.status == "error" and "serializable" in huge.error


def test_many_jobs_keep_order_across_workers_and_a_timeout_mid_batch(sandbox: Sandbox) -> None:
    jobs = [
        SandboxJob(id=str(i), code="def solution(a):\n    return a * a", kwargs={"a": i})
        for i in range(400)
    ]
    jobs[7] = SandboxJob(id="7", code="while True:\n    pass")
    jobs[123] = SandboxJob(id="123", code="raise ValueError('boom')")
    results = sandbox.run(jobs)
    assert [r.id for r in results] == [j.id for j in jobs]
    assert results[7].status == "timeout"
    assert results[123].status == "error" and results[123].error == "ValueError: boom"
    ok = [r for i, r in enumerate(results) if i not in (7, 123)]
    assert all(r.status == "ok" and r.result == int(r.id) ** 2 for r in ok)


def test_run_is_thread_safe(sandbox: Sandbox) -> None:
    outputs: dict[int, list[object]] = {}

    def call(k: int) -> None:
        jobs = [
            SandboxJob(
                id=f"{k}-{i}", code="def solution(a, b):\n    return a + b", kwargs={"a": i, "b": k}
            )
            for i in range(200)
        ]
        outputs[k] = [r.result for r in sandbox.run(jobs)]

    threads = [threading.Thread(target=call, args=(k,)) for k in (1000, 2000, 3000)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k, results in outputs.items():
        assert results == [i + k for i in range(200)]


PID_PROGRAM = "import os\nprint(os.getpid())"


def test_every_untrusted_program_gets_a_process_of_its_own() -> None:
    """Different programs never share a process, nor do two calls; one program's inputs in
    one call may (it can only affect its own results)."""
    with Sandbox(workers=1, timeout_s=2.0, recycle_after=3) as sb:
        per_call = []
        for _ in range(4):
            jobs = [SandboxJob(id=f"same{i}", code=PID_PROGRAM) for i in range(3)]
            jobs += [SandboxJob(id=f"other{i}", code=PID_PROGRAM + f"\n# {i}") for i in range(3)]
            results = sb.run(jobs)
            per_call.append([r.stdout for r in results])
    for pids in per_call:
        assert len(set(pids[:3])) == 1  # one program, three inputs: one process
        assert len(set(pids[3:])) == 3 and pids[0] not in pids[3:]  # four programs, four
    assert len({p for pids in per_call for p in pids}) == 16


def test_trusted_programs_share_workers_recycled_after_n_jobs() -> None:
    with Sandbox(workers=1, timeout_s=2.0, recycle_after=3, trusted_programs=[PID_PROGRAM]) as sb:
        pids = []
        for _ in range(4):
            results = sb.run([SandboxJob(id=str(i), code=PID_PROGRAM) for i in range(3)])
            pids += [r.stdout for r in results]
        # a program that is not registered never lands on a trusted worker
        (other,) = sb.run([SandboxJob(id="u", code=PID_PROGRAM + "\n")])
    assert len(set(pids)) == 4  # one pid per 3 jobs
    assert other.stdout not in pids


def test_isolation_report_lists_every_layer() -> None:
    rows = isolation_report()
    names = [name for name, _, _ in rows]
    assert names == [
        "network",
        "filesystem",
        "uid",
        "seccomp",
        "rlimits",
        "environment",
        "workdir",
        "process",
    ]
    import os

    if os.geteuid() == 0:  # this machine and CI: every layer must be in force
        assert all(active for _, active, _ in rows), rows


def test_codec_roundtrip_and_rejects_malformed_tags() -> None:
    value = {"a": [1, 2.5, "s", None, True, Fraction(-3, 7)], "$fraction": {"$dict": 1}}
    assert decode(encode(value)) == value
    for bad in ({"$fraction": [1, 0]}, {"$fraction": "1/2"}, {"$dict": [[1, 2]]}):
        with pytest.raises(UnsafeValueError):
            decode(bad)
    nested: list[object] = []
    for _ in range(100):
        nested = [nested]
    with pytest.raises(UnsafeValueError):
        to_safe(nested)


def _thp_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "absent"
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else "absent"


@pytest.mark.skipif(_thp_mode() in ("never", "absent"), reason="no transparent huge pages")
def test_zygote_heap_lands_on_huge_pages() -> None:
    # In a child interpreter: what the sympy zygote does before forking workers.
    probe = (
        "import gc\n"
        "from mathsynth.verifiers.sandbox import zygote\n"
        "zygote._preload('sympy'); gc.collect()\n"
        "collapsed = zygote.collapse_heap()\n"
        "huge = [int(l.split()[1]) for l in open('/proc/self/smaps_rollup')"
        " if l.startswith('AnonHugePages:')][0] * 1024\n"
        "print(collapsed, huge)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    collapsed, huge = map(int, out.split())
    assert collapsed >= 8 << 20  # sympy's heap is tens of MiB
    assert huge >= collapsed // 2  # and the kernel really maps it with huge pages


def test_collapse_heap_is_only_advice_without_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    from mathsynth.verifiers.sandbox import zygote

    def no_proc(*args: object, **kwargs: object) -> object:
        raise FileNotFoundError("/proc/self/maps")

    monkeypatch.setattr("builtins.open", no_proc)
    assert zygote.collapse_heap() == 0
