"""What a new user hits first, each through the real `mathsynth` console script: small
builds, usage errors, bad output paths, failed starts, moved datasets, the plain-JSON
program contract, duplicates across generators, and seed rows that cannot be read."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import duckdb
import pytest
from console import assert_one_line_error, mathsynth
from dataset_checks import read_table

from mathsynth import __version__
from mathsynth.config import load_config
from mathsynth.executor.local import BuildContext, finish_build, prepare_build, run_batch
from mathsynth.generators.seeds.library import load_library
from mathsynth.storage.catalog import Catalog, open_catalog
from mathsynth.text import question_key
from mathsynth.verifiers.answers import AnswerChecker
from mathsynth.verifiers.sandbox import Sandbox

# -- 1. small builds --------------------------------------------------------------------------


@pytest.mark.slow
def test_readme_small_build_and_its_rerun(tmp_path: Path, prefect_env: dict[str, str]) -> None:
    out = tmp_path / "small"
    args = ("build", "--out", str(out), "--max-seeds", "10", "--variants", "16", "--seed", "7")
    first = mathsynth(*args, env=prefect_env)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = read_table(out, "sft")
    assert rows and {r["generator"] for r in rows} == {"infinitymath", "mugglemath", "mathscale"}
    again = mathsynth(*args, env=prefect_env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already done" in again.stdout
    assert sorted(r["id"] for r in read_table(out, "sft")) == sorted(r["id"] for r in rows)


@pytest.mark.slow
def test_every_library_prefix_builds_with_every_generator(tmp_path: Path) -> None:
    """--max-seeds over the library, all generators, the smallest counts (one sandbox, one
    answer checker for the exact answers). Small libraries are where planning broke (MathScale
    pairing, MuggleMath partners with fewer seeds than a plan wants), so every size up to 12
    builds; above that a few sizes and the whole library keep the suite short."""
    size = len(load_library())
    sizes = sorted({*range(1, 13), 30, 60, 120, 200, size})
    with Sandbox(workers=2) as sandbox, AnswerChecker(workers=1) as checker:
        for k in sizes:
            out = tmp_path / f"k{k}"
            config = load_config(
                out=out,
                max_seeds=k,
                variants=1,
                mugglemath_variants=1,
                mathscale_samples=3,
                batch_size=64,
            )
            ctx = BuildContext(config, out, f"k{k}", Catalog(out), sandbox, checker=checker)
            batches, done = prepare_build(ctx, overwrite=False)
            summaries = [run_batch(ctx, b, done) for b in batches]
            report = finish_build(ctx, summaries, 0.0)
            assert report["totals"]["sft"] > 0, k
            shutil.rmtree(out)


# -- 2. usage errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ([], "Missing command"),
        (["publish"], "No such command 'publish'"),
        (["export"], "Missing command"),
        (["export", "hub"], "Missing argument 'REPO_ID'"),
        (["build", "--no-such-flag"], "No such option: --no-such-flag"),
        (["build", "--variants", "abc"], "Invalid value for '--variants'"),
        (["stats"], "Missing argument"),
        (["sandbox"], "Missing command"),
        (["sandbox", "run"], "Missing argument"),
    ],
)
def test_usage_errors_are_a_usage_line_and_one_error_line(args: list[str], error: str) -> None:
    proc = mathsynth(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("Usage: mathsynth"), proc.stderr
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and error in errors[0], proc.stderr
    assert len(lines) <= 3, proc.stderr  # usage, the "--help" hint, the error


def test_version() -> None:
    proc = mathsynth("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"mathsynth {__version__}"


# -- 3. bad --out paths -----------------------------------------------------------------------


def _immutable_dir(path: Path) -> Path:
    """A directory nothing may be written into, whoever we are."""
    path.mkdir()
    if os.geteuid() == 0:
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True)
        assert done.returncode == 0, f"chattr +i failed: {done.stderr!r}"
    else:
        path.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return path


def _release(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    path.chmod(0o755)


def test_out_is_a_file(tmp_path: Path) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    proc = mathsynth("build", "--out", str(target), "--max-seeds", "1", "--variants", "1")
    assert_one_line_error(proc, str(target), "is a file, not a directory")
    assert target.read_text() == "mine"
    nested = mathsynth("build", "--out", str(target / "sub"), "--max-seeds", "1")
    assert_one_line_error(nested, str(target), "is a file, not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("target", ["/proc/mathsynth-out", "/sys/mathsynth-out"])
def test_out_under_a_pseudo_file_system(target: str) -> None:
    proc = mathsynth("build", "--out", target, "--max-seeds", "1", "--variants", "1")
    assert_one_line_error(proc, target, "cannot write in")
    assert not Path(target).exists()


def test_out_in_an_unwritable_directory(tmp_path: Path) -> None:
    locked = _immutable_dir(tmp_path / "locked")
    try:
        for target in (locked, locked / "sub"):
            proc = mathsynth("build", "--out", str(target), "--max-seeds", "1", "--variants", "1")
            line = assert_one_line_error(proc, str(target), "cannot write in", "permission")
            assert "locked by another process" not in line
        assert list(locked.iterdir()) == []
    finally:
        _release(locked)


def test_dataset_in_a_directory_that_became_immutable(
    tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    out = tmp_path / "ds"
    args = ("build", "--out", str(out), "--max-seeds", "1", "--variants", "2")
    assert mathsynth(*args, "--generators", "infinitymath", env=prefect_env).returncode == 0
    before = sorted(p.name for p in out.iterdir())
    _immutable_dir_existing(out)
    try:
        proc = mathsynth(*args, "--generators", "infinitymath", env=prefect_env)
        line = assert_one_line_error(proc, str(out), "permission")
        assert "locked by another process" not in line
        assert sorted(p.name for p in out.iterdir()) == before
    finally:
        _release(out)


def _immutable_dir_existing(path: Path) -> None:
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
    else:
        path.chmod(stat.S_IRUSR | stat.S_IXUSR)


# -- 4. a failed start leaves nothing ---------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("existing", [False, True])
def test_unreachable_llm_leaves_the_directory_as_it_was(
    tmp_path: Path, prefect_env: dict[str, str], existing: bool
) -> None:
    out = tmp_path / "parent" / "ds"
    if existing:
        out.mkdir(parents=True)
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    llm = ("--llm-base-url", url, "--llm-model", "m")
    proc = mathsynth(
        "build", "--out", str(out), "--max-seeds", "2", "--variants", "2", *llm, env=prefect_env
    )
    assert_one_line_error(proc, "cannot reach the LLM endpoint", url)
    if existing:
        assert list(out.iterdir()) == []
    else:
        assert not (tmp_path / "parent").exists()
    offline = mathsynth(
        "build", "--out", str(out), "--max-seeds", "2", "--variants", "2", env=prefect_env
    )
    assert offline.returncode == 0, offline.stderr[-2000:]


# -- 5. a copied or moved dataset keeps working -----------------------------------------------


@pytest.mark.slow
def test_copied_and_moved_dataset_answers_queries(
    tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    out = tmp_path / "ds"
    built = mathsynth(
        "build", "--out", str(out), "--max-seeds", "3", "--variants", "4", env=prefect_env
    )
    assert built.returncode == 0, built.stderr[-2000:]
    count = len(read_table(out, "sft"))
    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(out, copy)
    moved = tmp_path / "moved"
    out.rename(moved)
    for place in (copy, moved):
        con = open_catalog(place)
        assert con.execute("SELECT count(*) FROM sft").fetchone() == (count,)
        con.close()
        # plain DuckDB from inside the dataset directory, no helper
        script = (
            "import duckdb; con = duckdb.connect('catalog.duckdb', read_only=True); "
            "print(con.execute('SELECT count(*) FROM sft').fetchone()[0])"
        )
        plain = subprocess.run(
            [sys.executable, "-c", script], cwd=place, capture_output=True, text=True
        )
        assert plain.stdout.strip() == str(count), plain.stderr
        stats = mathsynth("stats", str(place))
        assert stats.returncode == 0 and "infinitymath" in stats.stdout, stats.stderr


# -- 6 and 7. a whole default build: the plain-JSON program contract, no duplicates -----------

_PLAIN = """
import json, sys
from fractions import Fraction
failures = []
exact = 0
rows = json.load(sys.stdin)
for row in rows:
    ns = {}
    exec(row["program"], ns)
    got = ns["solution"](**json.loads(row["variables"]))
    try:
        want = Fraction(row["answer"])
    except ValueError:  # an exact (LaTeX) answer: the README's sympy one-liner
        import sympy
        exact += 1
        ok = sympy.latex(sympy.sympify(got)) == row["answer"]
    else:
        if isinstance(got, float):
            ok = abs(got - float(want)) <= 1e-9 * max(1.0, abs(float(want)))
        else:
            ok = not isinstance(got, (str, bool)) and Fraction(got) == want
    if not ok:
        failures.append([row["id"], repr(got), row["answer"]])
print(json.dumps({"checked": len(rows), "exact": exact, "failures": failures[:20],
                  "failed": len(failures)}))
"""


@pytest.mark.slow
def test_every_program_reproduces_its_answer_with_plain_python(default_build: Path) -> None:
    """`exec(program)` + `solution(**json.loads(variables))` in a bare interpreter (`-I`) gives
    `answer` for every row: exactly for fractions with the standard library only, and as
    `sympy.latex(sympy.sympify(value))` for exact (LaTeX) answers, the README's one-liners."""
    rows = [r for r in read_table(default_build, "sft") if r["program"]]
    assert len(rows) >= 10_000
    payload = json.dumps(
        [{k: r[k] for k in ("id", "program", "variables", "answer")} for r in rows]
    )
    proc = subprocess.run(
        [sys.executable, "-I", "-c", _PLAIN], input=payload, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["checked"] == len(rows)
    assert report["failed"] == 0, report["failures"]
    assert report["exact"] > 0, "the default build has exact answers; the check must cover them"
    fractions = [r for r in rows if any("/" in str(v) for v in json.loads(r["variables"]).values())]
    assert fractions, "the default build has fraction variables; the check must cover them"


@pytest.mark.slow
def test_no_question_twice_across_generators(default_build: Path) -> None:
    rows = read_table(default_build, "sft")
    keys = [question_key(r["question"]) for r in rows]
    assert len(keys) == len(set(keys))
    assert len({r["generator"] for r in rows}) == 3
    derived = {r["source_id"] for t in ("dpo", "formal") for r in read_table(default_build, t)}
    assert derived <= {r["id"] for r in rows}  # nothing derived from a dropped duplicate
    con = duckdb.connect()
    twins = con.sql(
        f"SELECT detail FROM '{default_build}/rejected/*.parquet' "
        "WHERE reason = 'duplicate_across_batches'"
    ).fetchall()
    assert all("same question as row" in d for (d,) in twins)


# -- 9. seed rows that cannot be read are reported --------------------------------------------


def test_malformed_seed_rows_are_reported_on_the_terminal(
    tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    seeds = tmp_path / "seeds.jsonl"
    good = {
        "question": "Ann has 3 bags with 4 apples each. How many apples does she have?",
        "answer": "She has 3*4=<<3*4=12>>12 apples.\n#### 12",
    }
    lines = [json.dumps(good), "{not json", json.dumps({"question": "no answer"})]
    seeds.write_text("\n".join(lines) + "\n")
    out = tmp_path / "ds"
    proc = mathsynth(
        "build", "--seeds", str(seeds), "--out", str(out), "--generators", "infinitymath",
        "--variants", "2", env=prefect_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    warning = [line for line in proc.stderr.splitlines() if "warning:" in line]
    assert len(warning) == 1, proc.stderr
    assert "2 seed row(s)" in warning[0] and f"{seeds}:2" in warning[0]
    assert Fraction(read_table(out, "sft")[0]["answer"]) > 0
