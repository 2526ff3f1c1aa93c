"""The filesystem a program sees is only what Python needs, and where a layer is missing
the sandbox says so: a warning line, `mathsynth doctor`, and every row's provenance."""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from console import mathsynth
from dataset_checks import read_table

import mathsynth.verifiers.sandbox.worker as worker_module
from mathsynth.verifiers.sandbox import Sandbox, SandboxError, SandboxJob

PROJECT = Path(worker_module.__file__).resolve().parents[2]
KEY = "sk-proj-do-not-leak-5d1e"
FULL = os.geteuid() == 0  # this machine and CI: every layer must be in force as root

# Every attempt reports what it got, so a leak shows up in the result.
PROBE = """
import os
def attempt(action, path):
    try:
        return repr(action(path))
    except OSError as exc:
        return type(exc).__name__
def solution(read=(), listing=()):
    out = {}
    for p in read:
        out[p] = attempt(lambda q: open(q).read(), p)
    for p in listing:
        out[p] = attempt(os.listdir, p)
    return out
"""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with Sandbox(workers=1, timeout_s=20.0) as sb:
        yield sb


def probe(sb: Sandbox, read: list[str] = (), listing: list[str] = ()) -> dict[str, str]:  # type: ignore[assignment]
    (r,) = sb.run([SandboxJob("p", PROBE, {"read": list(read), "listing": list(listing)})])
    assert r.status == "ok", r.error
    return r.result


@pytest.fixture()
def project_env_file(tmp_path: Path) -> Iterator[list[Path]]:
    """The issue's case: a world-readable .env holding a key beside the project (the
    checkout the sandbox runs from), and beside a user's project with its output dir."""
    made: list[Path] = []
    user_project = tmp_path / "project"
    (user_project / "data" / "default").mkdir(parents=True)
    (user_project / "data" / "default" / "catalog.duckdb").write_text("rows")
    candidates = [PROJECT / ".env", user_project / ".env"]
    for path in candidates:
        if not path.exists():  # never overwrite a developer's real .env
            path.write_text(f"OPENAI_API_KEY={KEY}\n")
            path.chmod(0o644)
            made.append(path)
    for d in (tmp_path, user_project):
        d.chmod(0o755)
    try:
        yield candidates
    finally:
        for path in made:
            path.unlink()


def assert_hidden(outcome: dict[str, str], *errors: str) -> None:
    for path, got in outcome.items():
        assert got in errors, f"{path}: a program got {got}"
        assert KEY not in got


@pytest.mark.skipif(not FULL, reason="the private root needs root or a user namespace")
def test_a_program_cannot_read_or_list_host_files(
    sandbox: Sandbox, project_env_file: list[Path], tmp_path: Path
) -> None:
    assert {la.name: la.mode for la in sandbox.layers}["filesystem"] == "pivot_root"
    read = [str(p) for p in project_env_file]
    read += ["/etc/passwd", "/etc/hostname", "/etc/shadow", str(PROJECT / "pyproject.toml")]
    read += [worker_module.__file__, sys.prefix + "/pyvenv.cfg"]
    listing = ["/work", "/home", "/root", "/srv", "/proc", "/sys", "/var", "/opt", "/mnt"]
    listing += [str(PROJECT), str(PROJECT.parent), str(tmp_path), str(tmp_path / "project")]
    listing += [str(tmp_path / "project" / "data"), os.getcwd(), sys.prefix]
    # A checkout right under /tmp makes its parent "/tmp", which a program sees as its own
    # empty tmpfs (test_what_a_program_does_see), not the host's.
    listing = [path for path in listing if path != "/tmp"]
    assert_hidden(probe(sandbox, read, listing), "FileNotFoundError")


@pytest.mark.skipif(not FULL, reason="the private root needs root or a user namespace")
def test_what_a_program_does_see(sandbox: Sandbox) -> None:
    code = """
import os, sys, tempfile
def solution():
    open('/tmp/mine.txt', 'w').write('x')
    with tempfile.NamedTemporaryFile(dir=None) as fh:
        tmp = os.path.dirname(fh.name)
    return {"root": sorted(os.listdir('/')), "etc": os.listdir('/etc'),
            "dev": sorted(os.listdir('/dev')), "tmp": os.listdir('/tmp'), "cwd": os.getcwd(),
            "tempdir": tmp, "site": sorted(os.listdir('/python/site')),
            "path": sys.path, "prefix": sys.prefix, "home": os.environ.get("HOME")}
"""
    first, second = sandbox.run([SandboxJob("a", code), SandboxJob("b", code)])
    assert first.status == "ok", first.error
    seen = first.result
    assert {"dev", "etc", "python", "tmp", "usr"} <= set(seen["root"])
    assert set(seen["root"]) <= {
        "dev",
        "etc",
        "lib",
        "lib32",
        "lib64",
        "libx32",
        "python",
        "tmp",
        "usr",
    }
    assert seen["etc"] == ["ld.so.cache"]  # only what the loader needs
    assert seen["dev"] == ["full", "null", "random", "urandom", "zero"]
    assert seen["tmp"] == ["mine.txt"] and seen["cwd"] == "/tmp" and seen["tempdir"] == "/tmp"
    assert second.result["tmp"] == ["mine.txt"]  # its own /tmp, not the previous job's file
    assert {"sympy", "mpmath"} <= set(seen["site"])
    assert not {"prefect", "openai", "pyarrow", "mathsynth"} & set(seen["site"])
    assert all(p.startswith("/python/") for p in seen["path"]), seen["path"]
    assert seen["prefix"] == "/python" and seen["home"] == "/nonexistent"


@pytest.mark.skipif(not FULL, reason="the private root needs root or a user namespace")
def test_everything_but_the_private_tmp_is_read_only(sandbox: Sandbox) -> None:
    targets = ["/python/site/sympy/new.py", "/usr/lib/new.so", "/python/lib/new.py", "/etc/x"]
    code = "def solution(paths):\n" + "".join(
        [
            "    out = []\n",
            "    for p in paths:\n",
            "        try:\n",
            "            open(p, 'w').write('x')\n",
            "            out.append('written')\n",
            "        except OSError as exc:\n",
            "            out.append(exc.errno)\n",
            "    return out\n",
        ]
    )
    (r,) = sandbox.run([SandboxJob("w", code, {"paths": targets + ["/new-at-root"]})])
    assert r.status == "ok", r.error
    assert r.result == [30] * (len(targets) + 1)  # EROFS


def test_lazy_imports_and_loader_libraries_work(sandbox: Sandbox) -> None:
    extension = "sqlite3" if importlib.util.find_spec("_sqlite3") else "zlib"
    code = f"""
import csv, zipfile, json.tool, {extension}
import sympy.physics.units as units, sympy.stats
from mathsynth.verifiers.sandbox import codec
def solution():
    x = sympy.Symbol('x')
    return [str(sympy.integrate(sympy.sin(x) ** 2, x)), str(units.meter), codec.__name__,
            "x".encode("utf-16-le").decode("utf-16-le"), {extension}.__name__]
"""
    (r,) = sandbox.run([SandboxJob("lazy", code)])
    assert r.status == "ok", r.error
    assert r.result == [
        "x/2 - sin(x)*cos(x)/2",
        "meter",
        "mathsynth.verifiers.sandbox.codec",  # the sandbox's own code: imported, not readable
        "x",
        extension,
    ]


def test_the_issue_attack_through_sandbox_run_in_a_project(
    tmp_path: Path, project_env_file: list[Path]
) -> None:
    """`mathsynth sandbox run` from inside a project holding .env and an output dir."""
    user_project = tmp_path / "project"
    env_file = user_project / ".env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o644
    rows = [
        {"id": "env", "code": "def solution():\n    return open('.env').read()"},
        {"id": "abs", "code": f"def solution():\n    return open({str(env_file)!r}).read()"},
        {"id": "ls", "code": "import os\ndef solution():\n    return os.listdir('.')"},
        {"id": "passwd", "code": "def solution():\n    return open('/etc/passwd').read()"},
        {"id": "work", "code": "import os\ndef solution():\n    return os.listdir('/work')"},
        {"id": "ok", "code": "def solution():\n    return 6 * 7"},
    ]
    src = user_project / "programs.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = mathsynth("sandbox", "run", "programs.jsonl", cwd=user_project)
    assert proc.returncode == 0, proc.stderr
    out = {r["id"]: r for r in map(json.loads, proc.stdout.splitlines())}
    assert KEY not in proc.stdout
    assert out["ok"]["result"] == 42
    for name in ("env", "abs", "passwd", "work"):
        assert out[name]["status"] == "error", out[name]
        assert out[name]["error"].split(":")[0] in ("FileNotFoundError", "PermissionError")
    assert out["ls"]["status"] == "ok" and out["ls"]["result"] == []  # its own empty cwd


# -- degraded machines ---------------------------------------------------------------------


@pytest.fixture()
def disable(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    def set_(value: str) -> None:
        monkeypatch.setenv("MATHSYNTH_SANDBOX_DISABLE", value)

    yield set_


@pytest.mark.skipif(not FULL, reason="compares with the full sandbox of a root machine")
def test_without_mount_namespaces_landlock_still_hides_host_files(
    disable: object, project_env_file: list[Path], capfd: pytest.CaptureFixture[str]
) -> None:
    disable("mountns")  # type: ignore[operator]
    with Sandbox(workers=1, timeout_s=20.0) as sb:
        layers = {la.name: la for la in sb.layers}
        assert layers["filesystem"].active and layers["filesystem"].mode == "landlock"
        assert sb.isolation.startswith("reduced: filesystem=landlock")
        read = [str(p) for p in project_env_file] + ["/etc/passwd", str(PROJECT / "README.md")]
        listing = ["/work", "/home", "/root", str(PROJECT), "/etc", "/proc"]
        assert_hidden(probe(sb, read, listing), "PermissionError", "FileNotFoundError")
        code = (
            "import sympy.stats, tempfile, os\ndef solution():\n"
            "    with tempfile.TemporaryFile() as fh:\n        fh.write(b'x')\n"
            "    open('here.txt', 'w').write('x')\n    return os.listdir('.')"
        )
        (r,) = sb.run([SandboxJob("w", code)])
        assert (r.status, r.result) == ("ok", ["here.txt"]), r.error
    assert "warning: sandbox isolation reduced: filesystem=landlock" in capfd.readouterr().err


def test_a_machine_without_filesystem_isolation_says_so(
    disable: object, capfd: pytest.CaptureFixture[str]
) -> None:
    disable("mountns,landlock,seccomp")  # type: ignore[operator]
    with Sandbox(workers=1, timeout_s=20.0) as sb:
        layers = {la.name: la for la in sb.layers}
        assert not layers["filesystem"].active and not layers["seccomp"].active
        assert "MATHSYNTH_SANDBOX_DISABLE" in layers["seccomp"].detail
        assert sb.isolation.startswith("reduced:")
        assert "-filesystem" in sb.isolation and "-seccomp" in sb.isolation
        assert sb.mounts == [("/", "the host filesystem, as the worker's uid may see it")]
        (r,) = sb.run([SandboxJob("a", "def solution():\n    return 1 + 1")])
        assert r.result == 2  # programs still run
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("warning: sandbox")]
    assert len(lines) == 1 and "filesystem (" in lines[0] and "seccomp (" in lines[0], err


def test_an_unknown_layer_name_is_one_clear_error(disable: object, tmp_path: Path) -> None:
    disable("seccomp,firewall")  # type: ignore[operator]
    with pytest.raises(SandboxError, match="unknown layer.*firewall.*choose from"):
        Sandbox(workers=1).start()
    src = tmp_path / "p.jsonl"
    src.write_text('{"id": 1, "code": "pass"}\n')
    proc = mathsynth("sandbox", "run", str(src), env={**os.environ})
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().startswith("error: MATHSYNTH_SANDBOX_DISABLE: unknown layer")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_doctor_lists_every_layer_and_the_mounts_a_program_sees(disable: object) -> None:
    disable("seccomp")  # type: ignore[operator]
    proc = mathsynth("doctor", env={**os.environ, "COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    rows = {}
    for line in proc.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│┃ ").split("│")]
        if len(cells) == 3 and cells[0].startswith("sandbox"):
            rows[cells[0]] = (cells[1], cells[2])
    assert rows["sandbox: seccomp"][0] == "no"
    assert "MATHSYNTH_SANDBOX_DISABLE" in rows["sandbox: seccomp"][1]
    for layer in ("network", "rlimits", "environment", "workdir", "process"):
        assert rows[f"sandbox: {layer}"][0] == "yes", rows
    mounts = {k: v for k, v in rows.items() if k.startswith("sandbox mount ")}
    if FULL:
        assert rows["sandbox: filesystem"][0] == "yes" and rows["sandbox: uid"][0] == "yes"
        assert mounts["sandbox mount /tmp"] == ("yes", "private empty tmpfs, read-write")
        assert mounts["sandbox mount /python/site/sympy"][0] == "yes"
        assert "read-only bind of host" in mounts["sandbox mount /python/site/sympy"][1]
        assert mounts["sandbox mount /etc/ld.so.cache"][0] == "yes"
        assert all(ok == "yes" for ok, _ in mounts.values()), mounts
        assert not any("/work" in k or "/home" in k or "/root" in k for k in mounts)


@pytest.mark.slow
def test_each_row_records_the_isolation_level_that_checked_it(default_build: Path) -> None:
    rows = read_table(default_build, "sft")
    levels = {json.loads(r["provenance"])["sandbox"] for r in rows}
    assert levels == {"full"} if FULL else len(levels) == 1


@pytest.mark.slow
def test_a_reduced_build_says_which_layer_and_records_it(
    tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    out = tmp_path / "reduced"
    env = {**prefect_env, "MATHSYNTH_SANDBOX_DISABLE": "seccomp"}
    args = ("--max-seeds", "2", "--variants", "2", "--generators", "infinitymath")
    proc = mathsynth("build", "--out", str(out), *args, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if "sandbox isolation reduced" in line]
    assert warnings and "seccomp (disabled by MATHSYNTH_SANDBOX_DISABLE)" in warnings[0]
    rows = read_table(out, "sft")
    assert rows
    levels = {json.loads(r["provenance"])["sandbox"] for r in rows}
    assert len(levels) == 1 and "-seccomp" in levels.pop()
