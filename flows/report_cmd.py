"""`mathsynth report OUT` and the same report as Prefect artifacts (wiring only: the numbers
are storage/report_data.py, the page and charts storage/report_html.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from mathsynth import registry
from mathsynth.storage.report_data import FUNNEL_STEPS, report_data
from mathsynth.storage.report_html import charts, data_url, time_split_rows, write_report


def derived_methods() -> list[str]:
    return [name for name in registry.names() if registry.get(name).role == "derived"]


def build_report_data(out: Path) -> dict[str, Any]:
    return report_data(out, derived_methods())


def report_command(
    out: Annotated[Path, typer.Argument(help="A build's output directory.")],
    output: Annotated[
        Path | None, typer.Option(help="Where to write the page (default OUT/report.html).")
    ] = None,
) -> None:
    """Write report.html: yield funnel, rejections, coverage, answer types, cost, timings."""
    from rich.console import Console

    data = build_report_data(out)
    path, images = write_report(out, data, output)
    Console().print(
        f"wrote {path} ({len(images)} charts, {data['tables']['sft']} sft rows)", highlight=False
    )


def _markdown_table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "_none_\n"
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n"
    return head + "".join(
        "| " + " | ".join(str(row.get(c, "")) for c in columns) + " |\n" for row in rows
    )


def publish_report_artifacts(out: Path) -> dict[str, Any]:
    """The report's sections as artifacts of the current run: a markdown summary with the
    funnel and time split, tables (funnel, rejections, coverage, answer types, cost,
    batches) and one image per chart. Returns the report data."""
    from prefect.artifacts import (
        create_image_artifact,
        create_markdown_artifact,
        create_table_artifact,
    )

    data = build_report_data(out)
    split = time_split_rows(data)
    create_markdown_artifact(
        key="build-report-details",
        markdown=(
            f"# Build report: `{data['out']}`\n\n## Yield funnel\n\n"
            + _markdown_table(data["funnel"], ["generator", "method", *FUNNEL_STEPS])
            + "\n## Where the batches' time went\n\n"
            + _markdown_table(split, ["part", "seconds", "share"])
            + "\n## Top rejection reasons\n\n"
            + _markdown_table(data["rejections"][:15], ["generator", "stage", "reason", "rows"])
            + "\nThe full page: `mathsynth report "
            + data["out"]
            + "`.\n"
        ),
        description="Yield funnel, time split and rejection reasons",
    )
    tables = {
        "funnel": data["funnel"],
        "rejections": data["rejections"],
        "concepts": data["concepts"],
        "difficulty": data["difficulty"],
        "answer-types": data["answer_types"],
        "cost": data["cost"],
        "batches": [
            {k: v for k, v in b.items() if k != "time"}
            | {f"{p}_s": round(s, 3) for p, s in b["time"].items()}
            for b in data["batches"]
        ],
    }
    for name, rows in tables.items():
        if rows:
            create_table_artifact(
                key=f"report-{name}", table=rows, description=f"Build report: {name}"
            )
    for name, png in charts(data).items():
        create_image_artifact(
            image_url=data_url(png),
            key=f"report-chart-{name.replace('_', '-')}",
            description=f"Build report chart: {name}",
        )
    return data
