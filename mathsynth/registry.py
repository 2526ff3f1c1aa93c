"""The method registry: every generation method declares itself here, once.

A method is a package under `generators/` whose `METHOD` says what it is:

    METHOD = Method(
        name="infinitymath",
        role="source",               # makes problems from tasks; "derived" adds rows to them
        offline=make_offline_stage,  # (StageContext) -> Stage
        llm=None,                    # the LLM stage; None: the offline stage serves LLM builds
        plan=plan_tasks,             # source methods: (StageContext) -> Plan
    )

and one line in `BUILTIN` names the package. The executor, config validation and the CLI read
the registry and never name a method; adding a method is one package plus one entry here (or
`register(Method(...))` from a plugin or a test).

With an LLM configured, a source method's `llm` stage runs *instead of* its offline stage (the
model writes the problems); a derived method's `llm` stage runs *after* its offline stage (rule
pairs and LLM pairs, program statements and translated statements).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from mathsynth.errors import ConfigError
from mathsynth.records import Record
from mathsynth.seeds import Seed

if TYPE_CHECKING:
    from mathsynth.config import BuildConfig
    from mathsynth.stage import RecordStage, SourceStage

Role = Literal["source", "derived"]

# name -> the package whose METHOD declares it, in pipeline order (derived stages run in it).
BUILTIN: dict[str, str] = {
    "infinitymath": "mathsynth.generators.infinitymath",
    "mugglemath": "mathsynth.generators.mugglemath",
    "mathscale": "mathsynth.generators.mathscale",
    "rise": "mathsynth.generators.rise",
    "formalize": "mathsynth.generators.formalize",
}


class StageContext(Protocol):
    """What a build gives a method's planner and stage factories (the executor's
    `BuildContext`). Resources are typed loosely here because they live in layers above the
    core: `sandbox` is a `verifiers.sandbox.Sandbox`, `llm` a `generators.llm.LLMClient` or
    None, `checker` a `verifiers.answers.AnswerChecker` (with an LLM), `lean` a
    `verifiers.lean.LeanBackend` or None. `state` is per-method scratch space kept for the
    whole build (MathScale keeps its concept graph there), keyed by method name."""

    config: BuildConfig
    out: Path
    seeds: list[Seed]
    sandbox: Any
    llm: Any
    checker: Any
    lean: Any
    state: dict[str, Any]

    @property
    def config_hash(self) -> str: ...


# A unit of planned work: (seed position in the build's seed list or None, first task index,
# stop index). The SeedTasks it stands for are made only when its batch runs.
Unit = tuple[int | None, int, int]


@dataclass(frozen=True)
class Plan:
    """A source method's work for one build: units of tasks, and what planning rejected."""

    units: list[Unit]
    rejected: list[Record] = field(default_factory=list)


Planner = Callable[["StageContext"], Plan]
SourceFactory = Callable[["StageContext"], "SourceStage"]
DerivedFactory = Callable[["StageContext"], "RecordStage"]
# Turns dataset seeds (no template) into templated ones; returns (templated seeds, rejections).
SeedTemplater = Callable[["StageContext", list[Seed]], tuple[list[Seed], list[Record]]]


@dataclass(frozen=True)
class Method:
    """One generation method (see the module docstring).

    `template_seeds`, when set, is the method that makes dataset seeds usable by every source
    method (InfinityMATH's decoupling); the executor calls it for seeds without a template,
    whichever methods are selected. `uses_lean` asks the executor to open the build's Lean
    backend (configured with --lean-repl / --lean-server; None otherwise).
    """

    name: str
    role: Role
    offline: Callable[[StageContext], Any]
    llm: Callable[[StageContext], Any] | None = None
    plan: Planner | None = None
    template_seeds: SeedTemplater | None = None
    uses_lean: bool = False

    def __post_init__(self) -> None:
        if (self.role == "source") != (self.plan is not None):
            raise ValueError(f"method {self.name}: a source method needs a planner, others none")

    def stages(self, ctx: StageContext) -> list[Any]:
        """The stages this method adds to a batch of this build (see module docstring)."""
        if ctx.llm is None or self.llm is None:
            return [self.offline(ctx)]
        if self.role == "source":
            return [self.llm(ctx)]
        return [self.offline(ctx), self.llm(ctx)]


_registered: dict[str, Method] = {}


def register(method: Method) -> Method:
    """Add (or replace) a method by its name; returns it, so a module can write
    `METHOD = register(Method(...))`."""
    _registered[method.name] = method
    return method


def unregister(name: str) -> None:
    """Remove a method added with `register` (tests that add a toy method clean up)."""
    _registered.pop(name, None)


def names() -> tuple[str, ...]:
    """Every known method name: the built-ins in pipeline order, then registered ones."""
    return (*BUILTIN, *(n for n in _registered if n not in BUILTIN))


def get(name: str) -> Method:
    """The method called `name`, importing its package on first use.

    Failure modes: ConfigError for an unknown name; ImportError propagates from a package
    that is broken (a bug, not bad input).
    """
    if name in _registered:
        return _registered[name]
    if name not in BUILTIN:
        raise ConfigError(f"unknown generator {name!r} (known: {', '.join(names())})")
    method = importlib.import_module(BUILTIN[name]).METHOD
    _registered[name] = method
    return method


def selected(generators: list[str]) -> list[Method]:
    """The methods a config selects, in pipeline order (built-ins first, as listed)."""
    wanted = set(generators)
    return [get(n) for n in names() if n in wanted]


def seed_templaters() -> Mapping[str, SeedTemplater]:
    """Every method's seed templater, by method name (selected or not)."""
    out = {}
    for name in names():
        templater = get(name).template_seeds
        if templater is not None:
            out[name] = templater
    return out
