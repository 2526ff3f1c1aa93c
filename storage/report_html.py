"""The build report as one self-contained HTML file, charts drawn with matplotlib.

Charts are PNGs embedded as data URLs and the page has no script, font or stylesheet from
elsewhere, so it opens offline, from a mail attachment or a copied dataset. The same PNGs
are what the build flow publishes as Prefect image artifacts (`charts`).
"""

from __future__ import annotations

import base64
import html
import io
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mathsynth.storage.report_data import FUNNEL_STEPS, generator_funnel

REPORT_NAME = "report.html"
# Parts of a batch's time split, in the order they are stacked.
TIME_PARTS = ("llm_wait", "sandbox", "answer_checks", "lean", "writing")


def _pyplot() -> Any:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg", force=True)  # no display, never a GUI window
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def charts(data: dict[str, Any]) -> dict[str, bytes]:
    """One PNG per report section that has data: funnel, rejections, concepts, difficulty,
    answer types, cost, batches."""
    plt = _pyplot()
    out: dict[str, bytes] = {}

    funnel = generator_funnel(data["funnel"])
    if funnel:
        fig, ax = plt.subplots(figsize=(8, 0.6 + 0.5 * len(funnel) * 2))
        steps = FUNNEL_STEPS[1:]
        height = 0.8 / len(steps)
        for i, step in enumerate(steps):
            ys = [j + i * height for j in range(len(funnel))]
            ax.barh(ys, [row[step] for row in funnel], height=height, label=step)
        ax.set_yticks([j + 0.4 - height / 2 for j in range(len(funnel))])
        ax.set_yticklabels([row["generator"] for row in funnel])
        ax.invert_yaxis()
        ax.set_xlabel("rows")
        ax.set_title("Yield funnel per generator")
        ax.legend(fontsize=8, loc="lower right")
        out["funnel"] = _png(fig)

    rejections = data["rejections"][:20]
    if rejections:
        fig, ax = plt.subplots(figsize=(8, 0.6 + 0.3 * len(rejections)))
        labels = [f"{r['stage']}: {r['reason']}" for r in rejections]
        ax.barh(labels, [r["rows"] for r in rejections], color="#c0504d")
        ax.invert_yaxis()
        ax.set_xlabel("rows")
        ax.set_title("Rejection reasons (top 20)")
        out["rejections"] = _png(fig)

    concepts = data["concepts"][:20]
    if concepts:
        fig, ax = plt.subplots(figsize=(8, 0.6 + 0.3 * len(concepts)))
        ax.barh([c["concept"] for c in concepts], [c["rows"] for c in concepts])
        ax.invert_yaxis()
        ax.set_xlabel("sft rows")
        ax.set_title("Topic coverage (top 20 concepts)")
        out["concepts"] = _png(fig)

    if data["difficulty"]:
        generators = sorted({d["generator"] for d in data["difficulty"]})
        levels = sorted({d["difficulty"] for d in data["difficulty"]})
        fig, ax = plt.subplots(figsize=(8, 3.5))
        bottom = [0] * len(levels)
        for generator in generators:
            counts = {
                d["difficulty"]: d["rows"]
                for d in data["difficulty"]
                if d["generator"] == generator
            }
            values = [counts.get(level, 0) for level in levels]
            ax.bar([str(v) for v in levels], values, bottom=bottom, label=generator)
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_xlabel("difficulty")
        ax.set_ylabel("sft rows")
        ax.set_title("Difficulty coverage")
        ax.legend(fontsize=8)
        out["difficulty"] = _png(fig)

    if data["answer_types"]:
        fig, ax = plt.subplots(figsize=(6, 3))
        ax.bar([a["type"] for a in data["answer_types"]], [a["rows"] for a in data["answer_types"]])
        ax.set_ylabel("sft rows")
        ax.set_title("Answer types")
        out["answer_types"] = _png(fig)

    cost = [c for c in data["cost"] if c["tokens_per_accepted"]]
    if cost:
        fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3))
        names = [c["generator"] for c in cost]
        left.bar(names, [c["tokens_per_accepted"] for c in cost])
        left.set_title("LLM tokens per accepted row")
        right.bar(names, [c["cost_per_accepted"] or 0 for c in cost], color="#9bbb59")
        right.set_title("USD per accepted row")
        out["cost"] = _png(fig)

    batches = data["batches"]
    if batches:
        fig, ax = plt.subplots(figsize=(9, 3.5))
        xs = [b["batch"] for b in batches]
        bottom = [0.0] * len(batches)
        for part in TIME_PARTS:
            values = [b["time"].get(part, 0.0) for b in batches]
            if any(values):
                ax.bar(xs, values, bottom=bottom, label=part)
                bottom = [x + v for x, v in zip(bottom, values, strict=True)]
        other = [max(0.0, b["seconds"] - s) for b, s in zip(batches, bottom, strict=True)]
        ax.bar(xs, other, bottom=bottom, label="generation and other", color="#bbbbbb")
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("batch")
        ax.set_ylabel("seconds")
        ax.set_title("Batch timings and where the time went")
        ax.legend(fontsize=8)
        out["batches"] = _png(fig)
    return out


def _table(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    if not rows:
        return "<p><em>none</em></p>"
    columns = list(columns or rows[0].keys())
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def time_split_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Seconds per part summed over batches, with each part's share of the batch time."""
    total = sum(b["seconds"] for b in data["batches"])
    parts = {p: sum(b["time"].get(p, 0.0) for b in data["batches"]) for p in TIME_PARTS}
    parts["generation and other"] = max(0.0, total - sum(parts.values()))
    return [
        {"part": p, "seconds": round(s, 2), "share": f"{s / total:.1%}" if total else "-"}
        for p, s in parts.items()
        if s
    ]


def render_html(data: dict[str, Any], images: dict[str, bytes]) -> str:
    def image(name: str, alt: str) -> str:
        if name not in images:
            return ""
        return f'<img alt="{html.escape(alt)}" src="{data_url(images[name])}">'

    builds = data["builds"]
    last = builds[-1] if builds else {}
    sections = [
        ("Tables", _table([{"table": t, "rows": n} for t, n in data["tables"].items()]), ""),
        (
            "Yield funnel per generator and method",
            _table(data["funnel"], ["generator", "method", *FUNNEL_STEPS]),
            image("funnel", "yield funnel"),
        ),
        ("Seeds rejected before generation", _table(data["seeds"]), ""),
        ("Rejection reasons", _table(data["rejections"]), image("rejections", "rejections")),
        ("Topic coverage", _table(data["concepts"]), image("concepts", "concepts")),
        ("Difficulty coverage", _table(data["difficulty"]), image("difficulty", "difficulty")),
        ("Answer types", _table(data["answer_types"]), image("answer_types", "answer types")),
        ("Tokens and cost per accepted row", _table(data["cost"]), image("cost", "cost")),
        (
            "Batch timings",
            _table(time_split_rows(data))
            + _table(
                [
                    {k: v for k, v in b.items() if k != "time"}
                    | {p: round(b["time"].get(p, 0.0), 2) for p in TIME_PARTS}
                    for b in data["batches"]
                ]
            ),
            image("batches", "batch timings"),
        ),
        ("Build runs", _table(builds), ""),
    ]
    body = "".join(
        f"<section><h2>{html.escape(title)}</h2>{img}{table}</section>"
        for title, table, img in sections
    )
    generated = datetime.now(UTC).isoformat(timespec="seconds")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>mathsynth build report: {html.escape(data["out"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1100px; color: #222; }}
table {{ border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }}
th, td {{ border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; }}
th {{ background: #f0f0f0; }}
img {{ max-width: 100%; display: block; margin: 0.5em 0; }}
</style></head><body>
<h1>mathsynth build report</h1>
<p>Dataset <code>{html.escape(data["out"])}</code>,
config <code>{html.escape(str(data["config_hash"]))}</code>;
last build {html.escape(str(last.get("status", "-")))} in {_fmt(last.get("seconds"))} s.
Generated {generated}.</p>
{body}
</body></html>
"""


def write_report(
    out: Path, data: dict[str, Any], path: Path | None = None
) -> tuple[Path, dict[str, bytes]]:
    """Write the report (default OUT/report.html) atomically; returns it and its charts."""
    target = Path(path) if path is not None else Path(out) / REPORT_NAME
    images = charts(data)
    text = render_html(data, images)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, target)
    return target, images
