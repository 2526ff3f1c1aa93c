"""The bundled seed library: templated word problems written for this project.

Library files are YAML lists under `library/`, one file per topic family; each entry is a
`mathsynth.seeds.SeedSpec`.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import yaml
from pydantic import ValidationError

from mathsynth.errors import ConfigError
from mathsynth.generators.common.templates import fill
from mathsynth.seeds import Seed, SeedSpec


def _parse_library_file(name: str, text: str) -> list[SeedSpec]:
    try:
        rows = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"seed library {name}: invalid YAML ({exc})") from None
    if not isinstance(rows, list):
        raise ConfigError(f"seed library {name}: expected a YAML list of seeds")
    seeds = []
    for i, row in enumerate(rows):
        try:
            seeds.append(SeedSpec.model_validate(row))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(x) for x in first["loc"])
            ident = row.get("id", f"#{i}") if isinstance(row, dict) else f"#{i}"
            raise ConfigError(f"seed library {name}: seed {ident}: {loc}: {first['msg']}") from None
    return seeds


@cache
def load_library() -> tuple[SeedSpec, ...]:
    """All bundled seeds, in a stable order (file name, then position in file)."""
    root = resources.files("mathsynth.generators.seeds") / "library"
    seeds: list[SeedSpec] = []
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            seeds.extend(_parse_library_file(entry.name, entry.read_text(encoding="utf-8")))
    ids = [s.id for s in seeds]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ConfigError(f"seed library: duplicate seed ids {sorted(dupes)}")
    return tuple(seeds)


def bundled_seeds() -> list[Seed]:
    """The bundled library as Seeds, question filled with the default values."""
    out = []
    for spec in load_library():
        question = fill(spec.question, spec.default_values())
        out.append(Seed(id=spec.id, question=question, answer=spec.answer, spec=spec))
    return out
