"""The layout contract: one import name, folders importing each other as a DAG, a registry
the executor reads (a toy method registered from this file builds), one stage contract."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from dataset_checks import read_table

from mathsynth import registry
from mathsynth.config import load_config
from mathsynth.errors import ConfigError, MissingDependencyError
from mathsynth.executor.local import BuildContext, finish_build, prepare_build, run_batch
from mathsynth.records import Problem, Record
from mathsynth.registry import Method, Plan, StageContext
from mathsynth.seeds import SeedTask
from mathsynth.stage import RecordStage, SourceStage
from mathsynth.storage.catalog import Catalog
from mathsynth.verifiers.sandbox import Sandbox

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
# Lower layers never import higher ones; storage and verifiers share a layer and do not
# import each other.
LAYERS = {
    "mathsynth": 0,
    "storage": 1,
    "verifiers": 1,
    "generators": 2,
    "executor": 3,
    "training": 3,
    "flows": 4,
}


def _folder_of(package: str) -> str:
    """The repository folder a `mathsynth...` module lives in ("mathsynth" for the core)."""
    parts = package.split(".")
    if len(parts) > 1 and ".".join(parts[:2]) in PACKAGE_DIRS:
        return PACKAGE_DIRS[".".join(parts[:2])]
    return "mathsynth"


def _modules() -> Iterator[tuple[str, Path]]:
    for package, folder in PACKAGE_DIRS.items():
        root = ROOT / folder
        files = root.glob("*.py") if package == "mathsynth" else root.rglob("*.py")
        for path in files:
            yield folder, path


def _imports(path: Path) -> Iterable[str]:
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (a.name for a in node.names)


def test_every_package_folder_is_installed_under_mathsynth() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = set()
    for package, folder in PACKAGE_DIRS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if package == "mathsynth" and rel.parts:
                continue  # the core is one flat package; the other folders map below it
            found.add(".".join([package, *rel.parts]))
    assert found == listed


def test_folders_import_each_other_as_a_dag() -> None:
    upward = []
    for folder, path in _modules():
        for module in _imports(path):
            top = module.split(".")[0]
            assert top not in ("generators", "verifiers", "storage", "flows", "executor"), (
                f"{path}: imports {module} by a folder name, not as mathsynth.*"
            )
            if top != "mathsynth":
                continue
            target = _folder_of(module)
            if target == folder:
                continue
            if LAYERS[target] >= LAYERS[folder]:
                upward.append(f"{path.relative_to(ROOT)} -> {module}")
    assert upward == []


@pytest.mark.slow
def test_the_wheel_holds_one_import_package(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )  # fmt: skip
    (wheel,) = tmp_path.glob("mathsynth-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"mathsynth"}
    assert "mathsynth/generators/rise/offline.py" in names
    # Every seed file and pool ships (load_library reads them from the package).
    library = ROOT / "generators" / "seeds" / "library"
    for path in [*library.glob("*.yaml"), *library.glob("pools/*.yaml")]:
        assert f"mathsynth/{path.relative_to(ROOT)}" in names, path
    # Every prompt template and reply schema ships (generators/llm/prompts.py reads them).
    shipped = {n for n in names if "/prompts/" in n}
    for path in (ROOT / "generators").glob("*/prompts/*"):
        assert f"mathsynth/{path.relative_to(ROOT)}" in shipped, path
    top_level = next(n for n in names if n.endswith("top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["mathsynth"]


# -- the registry -----------------------------------------------------------------------------


class Doubling(SourceStage):
    """A toy source method: task k asks for 2 * (k + 1), with a program that computes it."""

    name = "toy"

    def run(self, tasks: Iterable[SeedTask]) -> Iterator[Record]:
        for task in tasks:
            n = task.index + 1
            yield Problem(
                generator="toy",
                method="double",
                seed_id="toy",
                question=f"What is twice {n}?",
                solution=f"2 * {n} = {2 * n}\nThe answer is {2 * n}.",
                answer=str(2 * n),
                program="def solution(n):\n    return 2 * n\n",
                variables={"n": n},
            )


def _toy_plan(ctx: StageContext) -> Plan:
    return Plan([(None, 0, 5)])


@pytest.fixture()
def toy_method() -> Iterator[Method]:
    method = registry.register(
        Method(name="toy", role="source", offline=lambda ctx: Doubling(), plan=_toy_plan)
    )
    yield method
    registry.unregister("toy")


def _build(config, sandbox: Sandbox) -> dict:
    ctx = BuildContext(config, config.out_dir, "run", Catalog(config.out_dir), sandbox)
    batches, done = prepare_build(ctx, overwrite=False)
    return finish_build(ctx, [run_batch(ctx, b, done) for b in batches], 0.0)


def test_a_method_registered_from_a_test_builds(toy_method: Method, tmp_path: Path) -> None:
    assert "toy" in registry.names()
    config = load_config(out=tmp_path / "ds", generators="toy,rise")
    with Sandbox(workers=1) as sandbox:
        report = _build(config, sandbox)
    rows = read_table(tmp_path / "ds", "sft")
    assert report["totals"]["sft"] == len(rows) == 5
    assert {r["verification"]["checker"] for r in rows} == {"exec"}  # checked like any other
    assert len(read_table(tmp_path / "ds", "dpo")) == 5  # and derived methods run on it
    registry.unregister("toy")
    with pytest.raises(ConfigError, match="unknown generator 'toy'"):
        load_config(generators="toy")


def test_a_method_declares_itself_once() -> None:
    for name in registry.BUILTIN:
        method = registry.get(name)
        assert method.name == name
        assert (method.role == "source") == (method.plan is not None)
    with pytest.raises(ValueError, match="planner"):
        Method(name="broken", role="derived", offline=lambda ctx: None, plan=_toy_plan)


def test_a_stage_with_a_missing_package_fails_when_built_with_a_pip_hint() -> None:
    class NeedsPackage(RecordStage):
        name = "needy"
        requires = (("mathsynth_no_such_module", "mathsynth-no-such-package"),)

    with pytest.raises(MissingDependencyError, match="pip install mathsynth-no-such-package"):
        NeedsPackage()


def test_reject_is_counted_by_reason() -> None:
    stage = Doubling()
    rejection = stage.reject({"index": 3}, "too_big", "3 is too big")
    assert (rejection.stage, rejection.reason, rejection.record) == ("toy", "too_big", {"index": 3})
    assert stage.stats == {"rejected:too_big": 1}
