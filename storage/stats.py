"""The numbers behind `mathsynth stats OUT`, read with DuckDB from the shards and catalog."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mathsynth.errors import InputFileError
from mathsynth.storage.catalog import CATALOG_NAME, Catalog
from mathsynth.storage.schemas import TABLES


def dataset_stats(out: Path) -> dict[str, Any]:
    """Counts by generator/method/status, per-table rows, rejection reasons, acceptance.

    Failure modes: a directory without catalog.duckdb raises InputFileError (not a dataset);
    CatalogBusyError when a build holds the catalog for longer than the retry window.
    """
    out = Path(out)
    if not (out / CATALOG_NAME).exists():
        raise InputFileError(out, "not a mathsynth dataset (no catalog.duckdb)")
    catalog = Catalog(out)
    catalog.refresh_views()
    has = {t: any((out / t).glob("*.parquet")) for t in TABLES}
    sft: list[tuple[Any, ...]] = []
    if has["sft"]:
        sft = catalog.query("SELECT generator, method, status, rows FROM sft_stats")
    rejected: list[tuple[Any, ...]] = []
    if has["rejected"]:
        rejected = catalog.query("SELECT stage, reason, rows FROM rejected_stats")
    tables = {
        t: (catalog.query(f"SELECT count(*) FROM {t}")[0][0] if has[t] else 0) for t in TABLES
    }
    cost = _llm_cost_by_generator(catalog)
    acceptance = []
    for generator, accepted, rejected_n in _accepted_and_rejected(catalog):
        total = int(accepted) + int(rejected_n)
        spent = cost.get(generator)
        acceptance.append(
            {
                "generator": generator,
                "accepted": int(accepted),
                "rejected": int(rejected_n),
                "rate": (int(accepted) / total) if total else 0.0,
                "cost_per_accepted": (spent / int(accepted)) if spent and int(accepted) else None,
            }
        )
    spent = _llm_cost_all_builds(catalog)
    llm = {
        "cost_usd": spent,
        "cost_per_accepted": (spent / tables["sft"]) if spent and tables["sft"] else None,
    }
    return {
        "sft": sft,
        "rejected": rejected,
        "tables": tables,
        "acceptance": acceptance,
        "llm": llm,
    }


def _llm_cost_all_builds(catalog: Catalog) -> float:
    """Everything paid for LLM calls by every build of this dataset, preparation included
    (seed decoupling, concept extraction), from the client's own counters in `builds.llm`."""
    total = 0
    for (llm,) in catalog.query("SELECT llm FROM builds WHERE llm IS NOT NULL"):
        total += int(json.loads(llm or "{}").get("cost_usd_micros", 0))
    return total / 1e6


def _accepted_and_rejected(catalog: Catalog) -> list[tuple[str, int, int]]:
    """Per source generator: sft rows kept, and rows its own stages (generation, reading,
    exec verification, dedup) rejected (`rejected_before_derived`, counted by the executor).
    Rejections by derived stages (RISE, formalize) are excluded: they judge pairs/statements
    made from rows that were already accepted."""
    totals: dict[str, list[int]] = {}
    for generator, counts in catalog.query("SELECT generator, counts FROM batches"):
        acc = totals.setdefault(generator, [0, 0])
        values = json.loads(counts or "{}")
        acc[0] += values.get("sft", 0)
        acc[1] += values.get("rejected_before_derived", 0)
    return [(g, a, r) for g, (a, r) in sorted(totals.items())]


def _llm_cost_by_generator(catalog: Catalog) -> dict[str, float]:
    """USD spent per generator, summed over batches' `<generator>.cost_usd_micros` stats."""
    spent: dict[str, float] = {}
    for generator, stats in catalog.query("SELECT generator, stats FROM batches"):
        for key, value in json.loads(stats or "{}").items():
            if key.endswith("cost_usd_micros"):
                spent[generator] = spent.get(generator, 0.0) + value / 1e6
    return spent


def generator_table(catalog: Catalog, generator: str) -> list[dict[str, Any]]:
    """One row per counter for a generator's batches (rows written, rejections by stage and
    reason, LLM requests / tokens / cost), summed over every finished batch."""
    totals: dict[str, int] = {}
    rows = catalog.query("SELECT counts, stats FROM batches WHERE generator = ?", [generator])
    for counts, stats in rows:
        for source in (counts, stats):
            for key, value in json.loads(source or "{}").items():
                totals[key] = totals.get(key, 0) + int(value)
    return [{"metric": k, "value": v} for k, v in sorted(totals.items())]


def generator_totals(catalog: Catalog) -> list[dict[str, Any]]:
    """Rows written per generator and table, over every finished batch of the dataset."""
    columns = ", ".join(f"sum(coalesce(CAST(counts->>'{t}' AS BIGINT), 0))" for t in TABLES)
    rows = catalog.query(
        f"SELECT generator, count(*), sum(tasks), {columns} FROM batches "
        "GROUP BY generator ORDER BY generator"
    )
    return [
        {
            "generator": g,
            "batches": int(b),
            "tasks": int(t),
            **{table: int(n) for table, n in zip(TABLES, counts, strict=True)},
        }
        for g, b, t, *counts in rows
    ]


def rejection_reasons(catalog: Catalog, generator: str | None = None) -> list[tuple[str, str, int]]:
    """(stage, reason, rows) of the rejected shards, most frequent first; with `generator`,
    only the rows of that generator's batches (a shard's number is its batch's number)."""
    if not any((catalog.out / "rejected").glob("*.parquet")):
        return []
    where, params = "", []
    if generator is not None:
        where = "WHERE b.generator = ?"
        params = [generator]
    rows = catalog.query(
        "SELECT r.stage, r.reason, count(*) AS n FROM read_parquet('rejected/*.parquet', "
        "filename = true, union_by_name = true) r JOIN batches b "
        "ON b.batch = CAST(regexp_extract(r.filename, 'part-(\\d+)', 1) AS INTEGER) "
        f"{where} GROUP BY ALL ORDER BY n DESC, r.stage, r.reason",
        params,
    )
    return [(str(s), str(r), int(n)) for s, r, n in rows]


def stats_json(report: dict[str, Any]) -> dict[str, Any]:
    """`dataset_stats` as plain JSON: rows as objects with named fields, for scripts."""
    return {
        "sft": [
            {"generator": g, "method": m, "status": s, "rows": int(n)}
            for g, m, s, n in report["sft"]
        ],
        "rejected": [{"stage": s, "reason": r, "rows": int(n)} for s, r, n in report["rejected"]],
        "tables": {t: int(n) for t, n in report["tables"].items()},
        "acceptance": report["acceptance"],
        "llm": report["llm"],
    }
