"""Pools: the names, objects and contexts a seed's roles are drawn from.

A pool file (`generators/seeds/library/pools/*.yaml`, any number of them, so every author can
add one without touching the others') maps pool names to entries:

    people:                      # a person pool: a name and the pronoun it takes
      kind: person
      items: [Maya/she, Leo/he, {name: Ana, pronoun: she}]
    fruits:                      # a thing pool: a singular noun, optional plural and fields
      kind: thing
      items: [apple, {noun: peach}, {noun: cherry, container: basket}]

A seed names the roles it uses (`pools: {person: people, fruit: fruits}`); each variant draws
one entry per role (roles on the same pool get different entries) and templates refer to them
as `{person}`, `{person.they}`, `{fruit.plural}`, `{n|fruit}` (see `templates.fill`).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

import yaml

from mathsynth.errors import ConfigError
from mathsynth.inflection import capitalize, plural, with_article

PRONOUNS: dict[str, dict[str, str]] = {
    "she": {"they": "she", "them": "her", "their": "her", "theirs": "hers", "themself": "herself"},
    "he": {"they": "he", "them": "him", "their": "his", "theirs": "his", "themself": "himself"},
}
PERSON_ATTRS = ("name", *PRONOUNS["she"])
THING_ATTRS = ("noun", "plural", "a", "the", "the_plural")


@dataclass(frozen=True, slots=True, eq=False)
class PoolItem:
    """One entry: a person (name + pronoun) or a thing (noun + plural + free fields)."""

    kind: Literal["person", "thing"]
    text: str
    pronoun: str | None = None
    plural_form: str | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def noun(self) -> str:
        return self.text

    @property
    def plural(self) -> str:
        return self.plural_form or plural(self.text)

    def attr(self, name: str) -> str:
        """`{role.name}`: a pronoun or name (person), noun forms or a field (thing). A
        capitalised attribute capitalises the result (`{person.They}`, `{fruit.A}`).

        Raises KeyError naming the attribute when the entry has no such attribute.
        """
        lower = name[:1].lower() + name[1:]
        value = self._attr(lower)
        return capitalize(value) if name[:1].isupper() else value

    def _attr(self, name: str) -> str:
        if self.kind == "person":
            if name == "name":
                return self.text
            if name in PRONOUNS[self.pronoun or "she"]:
                return PRONOUNS[self.pronoun or "she"][name]
        else:
            if name == "noun":
                return self.text
            if name == "plural":
                return self.plural
            if name == "a":
                return with_article(self.text)
            if name == "the":
                return f"the {self.text}"
            if name == "the_plural":
                return f"the {self.plural}"
        if name in self.fields:
            return self.fields[name]
        raise KeyError(name)


@dataclass(frozen=True, slots=True)
class Pool:
    name: str
    kind: Literal["person", "thing"]
    items: tuple[PoolItem, ...]
    source: str = ""

    @property
    def fields(self) -> set[str]:
        """Attributes every entry of this pool has (what a template may use)."""
        base = set(PERSON_ATTRS if self.kind == "person" else THING_ATTRS)
        shared = set.intersection(*(set(i.fields) for i in self.items)) if self.items else set()
        return base | shared


class PoolError(ConfigError):
    """A pool file or a pool reference that cannot be used."""


def parse_pool_file(name: str, text: str) -> dict[str, Pool]:
    """Pools of one file. Raises PoolError with the file and pool named."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise PoolError(f"pool file {name}: invalid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise PoolError(f"pool file {name}: expected a mapping of pool names to pools")
    pools = {}
    for pool_name, body in data.items():
        where = f"pool file {name}: pool {pool_name}"
        if not isinstance(body, dict) or set(body) - {"kind", "items"}:
            raise PoolError(f"{where}: expected {{kind: person|thing, items: [...]}}")
        kind = body.get("kind")
        if kind not in ("person", "thing"):
            raise PoolError(f"{where}: kind must be person or thing, not {kind!r}")
        raw = body.get("items")
        if not isinstance(raw, list) or len(raw) < 2:
            raise PoolError(f"{where}: needs a list of at least 2 items")
        items = tuple(_item(where, kind, i, entry) for i, entry in enumerate(raw))
        texts = [i.text for i in items]
        dupes = sorted({t for t in texts if texts.count(t) > 1})
        if dupes:
            raise PoolError(f"{where}: repeated items {dupes}")
        pools[str(pool_name)] = Pool(str(pool_name), kind, items, name)
    return pools


def _item(where: str, kind: str, i: int, entry: Any) -> PoolItem:
    at = f"{where}: item {i}"
    if kind == "person":
        if isinstance(entry, str) and "/" in entry:
            name, pronoun = (p.strip() for p in entry.split("/", 1))
            entry = {"name": name, "pronoun": pronoun}
        if not isinstance(entry, dict) or "name" not in entry or "pronoun" not in entry:
            raise PoolError(f"{at}: a person is 'Name/she', 'Name/he' or {{name, pronoun}}")
        if entry["pronoun"] not in PRONOUNS:
            raise PoolError(f"{at}: pronoun must be one of {sorted(PRONOUNS)}")
        extra = {k: str(v) for k, v in entry.items() if k not in ("name", "pronoun")}
        return PoolItem("person", str(entry["name"]), pronoun=entry["pronoun"], fields=extra)
    if isinstance(entry, str):
        entry = {"noun": entry}
    if not isinstance(entry, dict) or not entry.get("noun"):
        raise PoolError(f"{at}: a thing is a noun or {{noun, plural?, <field>: ...}}")
    reserved = set(THING_ATTRS) - {"noun", "plural"}
    if reserved & set(entry):
        raise PoolError(f"{at}: {sorted(reserved & set(entry))} are computed, not fields")
    extra = {k: str(v) for k, v in entry.items() if k not in ("noun", "plural")}
    return PoolItem("thing", str(entry["noun"]), plural_form=entry.get("plural"), fields=extra)


@cache
def bundled_pools() -> dict[str, Pool]:
    """Every pool of the bundled pool files. A pool defined in two files is an error."""
    root = resources.files("mathsynth.generators.seeds") / "library" / "pools"
    pools: dict[str, Pool] = {}
    if not root.is_dir():
        return pools
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        for name, pool in parse_pool_file(entry.name, entry.read_text(encoding="utf-8")).items():
            if name in pools:
                raise PoolError(
                    f"pool {name!r} is defined in both {pools[name].source} and {entry.name}"
                )
            pools[name] = pool
    return pools


def check_roles(roles: Mapping[str, str], pools: Mapping[str, Pool]) -> list[str]:
    """Why a seed's `pools:` mapping cannot be drawn (empty when fine)."""
    problems = []
    for role, pool in roles.items():
        if pool not in pools:
            problems.append(f"role {role!r}: unknown pool {pool!r}")
    by_pool: dict[str, int] = {}
    for pool in roles.values():
        by_pool[pool] = by_pool.get(pool, 0) + 1
    for pool, n in by_pool.items():
        if pool in pools and n > len(pools[pool].items):
            problems.append(f"pool {pool!r} has fewer items than the {n} roles drawn from it")
    return problems


def draw_roles(
    roles: Mapping[str, str],
    rng: random.Random,
    pools: Mapping[str, Pool] | None = None,
    avoid: Iterable[PoolItem] = (),
) -> dict[str, PoolItem]:
    """One entry per role, in declaration order; roles on one pool get different entries,
    and entries in `avoid` (another part of a composed problem) are not drawn again.

    Failure modes: KeyError for a role whose pool does not exist (the library loader rejects
    such seeds, so this only happens with a hand-made spec).
    """
    pools = bundled_pools() if pools is None else pools
    taken = {i.text for i in avoid}
    out: dict[str, PoolItem] = {}
    for role, pool_name in roles.items():
        items = [i for i in pools[pool_name].items if i.text not in taken]
        if not items:  # a tiny pool exhausted by `avoid`: allow repeats over failing
            items = list(pools[pool_name].items)
        item = rng.choice(items)
        taken.add(item.text)
        out[role] = item
    return out
