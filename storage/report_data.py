"""The numbers behind the build report (`mathsynth report OUT` and the flow's artifacts).

Everything is read from the dataset itself (shards + catalog), so a report can be made of
any finished or resumed build, on any machine. Rejected rows are attributed to the batch
that wrote them (a shard's number is its batch's number), hence to that batch's source
generator; the funnel reads their stages and reasons generically, so a step added later (a
`contaminated` reason from decontamination) appears without a change here.

Yield funnel, per generator and method, from the end backwards:
    decontaminated = accepted sft rows
    deduplicated   = decontaminated + rows rejected as contaminated
    verified       = deduplicated + rows rejected as duplicates (stage `dedup`)
    candidates     = verified + rows the generator or a check rejected (generation
                     failures, wrong programs, no agreement, ...)
    seeds          = distinct seeds behind all of those rows
Rejections by derived methods (RISE pairs, Lean statements) judge rows that were already
accepted; they are in the rejection reasons, not in the funnel.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mathsynth.errors import InputFileError
from mathsynth.storage.catalog import CATALOG_NAME, Catalog

FUNNEL_STEPS = ("seeds", "candidates", "verified", "deduplicated", "decontaminated")
# Rows rejected before any generator ran (unreadable or untemplatable seeds).
SEED_BATCH = "read_seeds"
NO_METHOD = "(none yet)"
CONTAMINATED = "contaminated"
DEDUP_STAGE = "dedup"
TIME_PREFIX = "time_ms."

_ANSWER_TYPES = (
    ("integer", r"^\d+$"),
    ("negative integer", r"^-\d+$"),
    ("decimal", r"^-?\d+\.\d+$"),
    ("fraction", r"^-?\d+/\d+$"),
)


def _has(out: Path, table: str) -> bool:
    return any((out / table).glob("*.parquet"))


def _funnel_step(stage: str, reason: str, derived: tuple[str, ...]) -> str | None:
    """Which funnel step a rejection left at (None: not part of the sft funnel)."""
    if any(stage == m or stage.startswith(f"{m}_") for m in derived):
        return None
    if reason == CONTAMINATED or stage.startswith("decontam"):
        return "deduplicated"  # lost between deduplicated and decontaminated
    if stage == DEDUP_STAGE:
        return "verified"
    return "candidates"


def report_data(out: Path, derived_methods: Sequence[str] = ()) -> dict[str, Any]:
    """All report sections as plain data (see the module docstring for the funnel).

    `derived_methods`: names of the methods that derive rows from accepted problems (the
    registry's "derived" role); their stages' rejections stay out of the funnel.

    Failure modes: InputFileError when `out` is not a dataset (no catalog.duckdb);
    CatalogBusyError while a build holds the catalog past the retry window.
    """
    out = Path(out)
    if not (out / CATALOG_NAME).exists():
        raise InputFileError(out, "not a mathsynth dataset (no catalog.duckdb)")
    catalog = Catalog(out)
    catalog.refresh_views()
    derived = tuple(derived_methods)
    identity = dict(catalog.query("SELECT key, value FROM dataset"))
    tables = {
        t: (catalog.query(f"SELECT count(*) FROM {t}")[0][0] if _has(out, t) else 0)
        for t in ("sft", "dpo", "formal", "rejected")
    }
    return {
        "out": str(out),
        "config_hash": identity.get("config_hash"),
        "builds": _builds(catalog),
        "tables": tables,
        "funnel": _funnel(catalog, out, derived),
        "seeds": _seed_losses(catalog, out),
        "rejections": _rejections(catalog, out),
        "concepts": _concepts(catalog, out),
        "difficulty": _difficulty(catalog, out),
        "answer_types": _answer_types(catalog, out),
        "cost": _cost(catalog),
        "batches": _batches(catalog),
    }


_REJECTED = (
    "SELECT r.stage, r.reason, r.record, b.generator AS batch_generator "
    "FROM read_parquet('rejected/*.parquet', filename = true, union_by_name = true) r "
    "JOIN batches b ON b.batch = CAST(regexp_extract(r.filename, 'part-(\\d+)', 1) AS INTEGER)"
)


def _funnel(catalog: Catalog, out: Path, derived: tuple[str, ...]) -> list[dict[str, Any]]:
    accepted: Counter[tuple[str, str]] = Counter()
    seeds: dict[tuple[str, str], set[str]] = defaultdict(set)
    if _has(out, "sft"):
        for generator, method, seed_id, n in catalog.query(
            "SELECT generator, method, seed_id, count(*) FROM sft GROUP BY ALL"
        ):
            accepted[(generator, method)] += int(n)
            if seed_id:
                seeds[(generator, method)].add(str(seed_id))
    lost: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    if _has(out, "rejected"):
        sql = (
            "SELECT batch_generator, json_extract_string(record, '$.method'), "
            "json_extract_string(record, '$.seed_id'), stage, reason, count(*) "
            f"FROM ({_REJECTED}) WHERE batch_generator <> ? GROUP BY ALL"
        )
        for generator, method, seed_id, stage, reason, n in catalog.query(sql, [SEED_BATCH]):
            step = _funnel_step(str(stage), str(reason), derived)
            if step is None:
                continue
            key = (str(generator), str(method) if method else NO_METHOD)
            lost[key][step] += int(n)
            if seed_id:
                seeds[key].add(str(seed_id))
    rows = []
    for key in sorted(set(accepted) | set(lost)):
        loss = lost.get(key, Counter())
        decontaminated = accepted.get(key, 0)
        deduplicated = decontaminated + loss["deduplicated"]
        verified = deduplicated + loss["verified"]
        candidates = verified + loss["candidates"]
        rows.append(
            {
                "generator": key[0],
                "method": key[1],
                "seeds": len(seeds.get(key, ())),
                "candidates": candidates,
                "verified": verified,
                "deduplicated": deduplicated,
                "decontaminated": decontaminated,
            }
        )
    return rows


def generator_funnel(funnel: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The funnel summed over methods, one row per generator (seeds: the largest method's,
    a lower bound of the distinct seeds, since methods share seeds)."""
    totals: dict[str, dict[str, Any]] = {}
    for row in funnel:
        acc = totals.setdefault(
            row["generator"], {"generator": row["generator"], **dict.fromkeys(FUNNEL_STEPS, 0)}
        )
        for step in FUNNEL_STEPS[1:]:
            acc[step] += row[step]
        acc["seeds"] = max(acc["seeds"], row["seeds"])
    return list(totals.values())


def _seed_losses(catalog: Catalog, out: Path) -> list[dict[str, Any]]:
    """Seeds rejected before any generator ran, by stage and reason."""
    if not _has(out, "rejected"):
        return []
    rows = catalog.query(
        f"SELECT stage, reason, count(*) FROM ({_REJECTED}) WHERE batch_generator = ? "
        "GROUP BY ALL ORDER BY 3 DESC",
        [SEED_BATCH],
    )
    return [{"stage": s, "reason": r, "rows": int(n)} for s, r, n in rows]


def _rejections(catalog: Catalog, out: Path) -> list[dict[str, Any]]:
    if not _has(out, "rejected"):
        return []
    rows = catalog.query(
        f"SELECT batch_generator, stage, reason, count(*) FROM ({_REJECTED}) "
        "GROUP BY ALL ORDER BY 4 DESC, 1, 2, 3"
    )
    return [{"generator": g, "stage": s, "reason": r, "rows": int(n)} for g, s, r, n in rows]


def _concepts(catalog: Catalog, out: Path, top: int = 30) -> list[dict[str, Any]]:
    if not _has(out, "sft"):
        return []
    rows = catalog.query(
        "SELECT concept, count(*) AS n FROM (SELECT unnest(concepts) AS concept FROM sft) "
        f"GROUP BY ALL ORDER BY n DESC, concept LIMIT {int(top)}"
    )
    return [{"concept": c, "rows": int(n)} for c, n in rows]


def _difficulty(catalog: Catalog, out: Path) -> list[dict[str, Any]]:
    if not _has(out, "sft"):
        return []
    rows = catalog.query(
        "SELECT generator, coalesce(difficulty, 0), count(*) FROM sft GROUP BY ALL ORDER BY 1, 2"
    )
    return [{"generator": g, "difficulty": int(d), "rows": int(n)} for g, d, n in rows]


def _answer_types(catalog: Catalog, out: Path) -> list[dict[str, Any]]:
    if not _has(out, "sft"):
        return []
    case = " ".join(
        f"WHEN regexp_matches(trim(answer), '{pattern}') THEN '{name}'"
        for name, pattern in _ANSWER_TYPES
    )
    rows = catalog.query(
        f"SELECT CASE {case} ELSE 'other' END AS kind, count(*) FROM sft GROUP BY ALL "
        "ORDER BY 2 DESC"
    )
    return [{"type": k, "rows": int(n)} for k, n in rows]


def _cost(catalog: Catalog) -> list[dict[str, Any]]:
    """Fresh (uncached) tokens and cost per generator, per accepted sft row."""
    acc: dict[str, Counter[str]] = defaultdict(Counter)
    for generator, counts, stats in catalog.query("SELECT generator, counts, stats FROM batches"):
        totals = acc[generator]
        totals["accepted"] += int(json.loads(counts or "{}").get("sft", 0))
        for key, value in json.loads(stats or "{}").items():
            for part in ("tokens_in", "tokens_out", "cost_usd_micros", "llm_requests"):
                if key.endswith(f".{part}"):
                    totals[part] += int(value)
    rows = []
    for generator, t in sorted(acc.items()):
        if generator == SEED_BATCH:
            continue
        n = t["accepted"]
        rows.append(
            {
                "generator": generator,
                "accepted": n,
                "llm_requests": t["llm_requests"],
                "tokens_in": t["tokens_in"],
                "tokens_out": t["tokens_out"],
                "cost_usd": t["cost_usd_micros"] / 1e6,
                "tokens_per_accepted": (t["tokens_in"] + t["tokens_out"]) / n if n else None,
                "cost_per_accepted": t["cost_usd_micros"] / 1e6 / n if n else None,
            }
        )
    return rows


def _batches(catalog: Catalog) -> list[dict[str, Any]]:
    rows = []
    for batch, generator, tasks, seconds, stats in catalog.query(
        "SELECT batch, generator, tasks, seconds, stats FROM batches ORDER BY batch"
    ):
        split = {
            k.removeprefix(TIME_PREFIX): v / 1000
            for k, v in json.loads(stats or "{}").items()
            if k.startswith(TIME_PREFIX)
        }
        rows.append(
            {
                "batch": int(batch),
                "generator": generator,
                "tasks": int(tasks or 0),
                "seconds": float(seconds or 0.0),
                "time": split,
            }
        )
    return rows


def _builds(catalog: Catalog) -> list[dict[str, Any]]:
    rows = catalog.query(
        "SELECT run_id, started_at, status, seconds, batches_total, batches_skipped, llm "
        "FROM builds ORDER BY started_at"
    )
    return [
        {
            "run_id": r,
            "started_at": str(started),
            "status": status,
            "seconds": float(sec or 0.0),
            "batches": int(total or 0),
            "skipped": int(skipped or 0),
            "llm_cost_usd": int(json.loads(llm or "{}").get("cost_usd_micros", 0)) / 1e6,
        }
        for r, started, status, sec, total, skipped, llm in rows
    ]
