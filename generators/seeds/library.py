"""The bundled seed library: templated word problems written for this project.

Library files are YAML lists under `library/`, one file per topic family; each entry is a
`mathsynth.seeds.SeedSpec`. Pools of names, objects and contexts live in `library/pools/`
(`generators.common.pools`). Every seed must pass `generators.seeds.checks.static_problems`
(phrasings, kinds, ranges, pool references, template fields); the seed lint
(`python -m mathsynth.generators.seeds.lint FILE`) adds the checks that run the program.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from functools import cache
from importlib import resources

import yaml
from pydantic import ValidationError

from mathsynth.errors import ConfigError
from mathsynth.generators.common.pools import Pool, bundled_pools, draw_roles
from mathsynth.generators.common.templates import fill
from mathsynth.generators.seeds.checks import static_problems
from mathsynth.seeds import Seed, SeedSpec


def parse_library_file(
    name: str, text: str, pools: Mapping[str, Pool] | None = None, *, strict: bool = True
) -> list[SeedSpec]:
    """The seeds of one library file. With `strict`, every seed must pass the static rules.

    Raises ConfigError naming the file, the seed and the first problem.
    """
    try:
        rows = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"seed library {name}: invalid YAML ({exc})") from None
    if not isinstance(rows, list):
        raise ConfigError(f"seed library {name}: expected a YAML list of seeds")
    pools = bundled_pools() if pools is None else pools
    seeds = []
    for i, row in enumerate(rows):
        ident = row.get("id", f"#{i}") if isinstance(row, dict) else f"#{i}"
        try:
            spec = SeedSpec.model_validate(
                {**row, "literal_braces": True} if isinstance(row, dict) else row
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            raise ConfigError(f"seed library {name}: seed {ident}: {loc}: {first['msg']}") from None
        if strict:
            problems = static_problems(spec, pools)
            if problems:
                more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
                raise ConfigError(f"seed library {name}: seed {ident}: {problems[0]}{more}")
        seeds.append(spec)
    return seeds


@cache
def load_library() -> tuple[SeedSpec, ...]:
    """All bundled seeds, in a stable order (file name, then position in file)."""
    root = resources.files("mathsynth.generators.seeds") / "library"
    seeds: list[SeedSpec] = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            seeds.extend(parse_library_file(entry.name, entry.read_text(encoding="utf-8")))
    ids = [s.id for s in seeds]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ConfigError(f"seed library: duplicate seed ids {sorted(dupes)}")
    return tuple(seeds)


def default_question(spec: SeedSpec) -> str:
    """The canonical phrasing filled with the default values and a fixed pool draw."""
    roles = draw_roles(spec.pools, random.Random(spec.id)) if spec.pools else {}
    return fill(spec.question, spec.default_values(), kinds=spec.quantity, roles=roles)


def bundled_seeds() -> list[Seed]:
    """The bundled library as Seeds, question filled with the default values."""
    return [
        Seed(id=spec.id, question=default_question(spec), answer=spec.answer, spec=spec)
        for spec in load_library()
    ]
