"""The `mathsynth` command line. Each command parses flags, calls into the library and prints;
every MathsynthError becomes one red line on stderr and exit code 2, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from mathsynth import registry
from mathsynth.errors import MathsynthError
from mathsynth.flows.decouple_cmd import decouple_command
from mathsynth.flows.deploy import deploy_command
from mathsynth.flows.export_cmd import export_app
from mathsynth.flows.prompts_cmd import prompts_app
from mathsynth.flows.report_cmd import report_command
from mathsynth.flows.sandbox_cmd import sandbox_app
from mathsynth.flows.train_cmd import eval_command, train_app
from mathsynth.flows.verify_cmd import verify_app

app = typer.Typer(
    name="mathsynth",
    help="Manufacture verified math training data.",
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)


def _print_version(value: bool) -> None:
    if value:
        from mathsynth import __version__

        console.print(f"mathsynth {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Manufacture verified math training data."""


@app.command()
def build(
    seeds: Annotated[str | None, typer.Option(help="Seeds: JSONL/Parquet path or HF id.")] = None,
    max_seeds: Annotated[int | None, typer.Option(help="Use at most N seeds.")] = None,
    out: Annotated[Path | None, typer.Option(help="Output dir (default ./data/<name>).")] = None,
    generators: Annotated[
        str | None, typer.Option(help=f"Comma list of: {','.join(registry.names())}.")
    ] = None,
    variants: Annotated[int | None, typer.Option(help="InfinityMATH variants per seed.")] = None,
    seed: Annotated[int | None, typer.Option(help="Global random seed.")] = None,
    llm_base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL.")] = None,
    llm_model: Annotated[str | None, typer.Option(help="Model name at that endpoint.")] = None,
    llm_max_tokens: Annotated[
        int | None, typer.Option(help="Max tokens per reply (llm.max_tokens.default).")
    ] = None,
    lean_repl: Annotated[str | None, typer.Option(help="Command that starts a Lean REPL.")] = None,
    lean_server: Annotated[str | None, typer.Option(help="Kimina Lean Server URL.")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML config file.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Records per Prefect task.")] = None,
    max_workers: Annotated[int | None, typer.Option(help="Concurrent batch tasks.")] = None,
    name: Annotated[str | None, typer.Option(help="Build name (default output dir).")] = None,
    runner: Annotated[
        str | None, typer.Option(help="Where batches run: threads (default) or dask.")
    ] = None,
    dask_address: Annotated[
        str | None, typer.Option(help="Dask scheduler (tcp://host:8786); default: local cluster.")
    ] = None,
    overwrite: Annotated[
        bool, typer.Option(help="Replace a dataset built from a different config.")
    ] = False,
    decontaminate: Annotated[
        str | None, typer.Option(help="Benchmarks to decontaminate against: PATH_OR_HF_ID[,...]")
    ] = None,
    near_dup_threshold: Annotated[
        float | None, typer.Option(help="Near-duplicate Jaccard threshold (default 0.8).")
    ] = None,
) -> None:
    """Build (or resume) a dataset. Rerunning the same command skips finished batches."""
    import os

    # The progress bar and summary replace Prefect's per-task console lines; the logs still
    # reach the Prefect API (UI). Set the variable yourself to see them in the terminal.
    # CRITICAL, not WARNING: Prefect logs a failed task/flow at ERROR with its traceback, and
    # `main` already reports that failure as one line.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "CRITICAL")
    # Builds run offline: the temporary server must not try to phone home.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from mathsynth.config import load_config

    cfg = load_config(
        config,
        **{
            "name": name,
            "seeds": seeds,
            "max_seeds": max_seeds,
            "out": out,
            "generators": generators,
            "variants": variants,
            "seed": seed,
            "batch_size": batch_size,
            "max_workers": max_workers,
            "llm.base_url": llm_base_url,
            "llm.model": llm_model,
            # The default budget: per-kind budgets from the config file stay.
            "llm.max_tokens.default": llm_max_tokens,
            "lean.repl_cmd": lean_repl,
            "lean.server_url": lean_server,
            "runner.kind": runner,
            "runner.address": dask_address,
            "decontaminate.sources": decontaminate,
            "near_dup.threshold": near_dup_threshold,
        },
    )
    if cfg.llm.configured:
        from mathsynth.generators.llm.prompts import PromptLibrary

        PromptLibrary(cfg.llm.prompts_dir)  # a bad prompt override fails before Prefect starts
    from mathsynth.flows.progress import run_with_progress

    report = run_with_progress(cfg, overwrite=overwrite, console=console)
    _print_build_summary(report)


def _print_build_summary(report: dict[str, Any]) -> None:
    table = Table(title=f"mathsynth build → {report['out']}")
    for col in ("generator", "batches", "sft", "dpo", "formal", "rejected"):
        table.add_column(col, justify="left" if col == "generator" else "right")
    for g in report["generators"]:
        table.add_row(
            g["generator"], *(str(g[c]) for c in ("batches", "sft", "dpo", "formal", "rejected"))
        )
    console.print(table)
    console.print(
        f"{report['batches']} batches, {report['batches_skipped']} already done; "
        f"{report['seconds']} s; config {report['config_hash']}"
    )
    near = report.get("near_duplicates") or {}
    if near.get("enabled"):
        console.print(
            f"near duplicates dropped: {near['dropped'].get('sft', 0)} of "
            f"{near['rows_checked']} rows (Jaccard >= {near['threshold']}); "
            f"dataset card: {report['card']}",
            highlight=False,
            soft_wrap=True,
        )
    problems = report.get("seed_problems") or {}
    if problems.get("unreadable"):
        err_console.print(
            f"[yellow]warning:[/] {problems['unreadable']} seed row(s) could not be read and "
            f"were skipped (first: {problems['first']}); each is in rejected/ with stage "
            "read_seeds",
            highlight=False,
            soft_wrap=True,
        )
    if problems.get("contaminated"):
        err_console.print(
            f"[yellow]note:[/] {problems['contaminated']} seed(s) match a benchmark and were "
            "dropped before generation; see rejected/ (reason contaminated)",
            highlight=False,
            soft_wrap=True,
        )
    if problems.get("untemplated"):
        err_console.print(
            f"[yellow]note:[/] {problems['untemplated']} seed(s) could not be turned into "
            "templates; see rejected/ (stage decouple) or `mathsynth stats`",
            highlight=False,
            soft_wrap=True,
        )


@app.command()
def stats(
    out: Annotated[Path, typer.Argument(help="A build's output directory.")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the numbers as one JSON object (for scripts).")
    ] = False,
) -> None:
    """Counts by generator / method / status, rejection reasons and acceptance rates."""
    from mathsynth.storage.stats import dataset_stats, stats_json

    report = dataset_stats(out)
    if as_json:
        import json

        sys.stdout.write(json.dumps(stats_json(report), indent=2, sort_keys=True) + "\n")
        return
    table = Table(title=f"sft rows in {out}")
    for col in ("generator", "method", "status", "rows"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for row in report["sft"]:
        table.add_row(*(str(v) for v in row))
    console.print(table)
    acc = Table(title="acceptance by source generator")
    for col in ("generator", "accepted", "rejected", "rate", "cost/accepted (USD)"):
        acc.add_column(col, justify="left" if col == "generator" else "right")
    for row in report["acceptance"]:
        cost = row["cost_per_accepted"]
        acc.add_row(
            row["generator"],
            str(row["accepted"]),
            str(row["rejected"]),
            f"{row['rate']:.1%}",
            "-" if cost is None else f"{cost:.6f}",
        )
    console.print(acc)
    llm = report["llm"]
    if llm["cost_usd"]:
        console.print(
            f"LLM spend over all builds of this dataset (preparation included): "
            f"{llm['cost_usd']:.4f} USD, {llm['cost_per_accepted']:.6f} USD per accepted sft row"
        )
    other = Table(title="other tables")
    other.add_column("table")
    other.add_column("rows", justify="right")
    for tbl, n in report["tables"].items():
        other.add_row(tbl, str(n))
    console.print(other)
    if report["rejected"]:
        rej = Table(title="rejections by stage and reason")
        for col in ("stage", "reason", "rows"):
            rej.add_column(col, justify="right" if col == "rows" else "left")
        for row in report["rejected"]:
            rej.add_row(*(str(v) for v in row))
        console.print(rej)


@app.command()
def doctor() -> None:
    """Report the sandbox isolation layers and the reachable Lean / LLM backends."""
    from mathsynth.config import load_config
    from mathsynth.flows.doctor import doctor_rows

    table = Table(title="mathsynth doctor")
    for col in ("component", "ok", "detail"):
        table.add_column(col)
    for component, ok, detail in doctor_rows(load_config()):
        table.add_row(component, "[green]yes[/]" if ok else "[yellow]no[/]", detail)
    console.print(table)


# Commands implemented next to the code they drive (sandbox, answers, decoupling).
app.command(name="deploy")(deploy_command)
app.command(name="report")(report_command)
app.add_typer(sandbox_app, name="sandbox", help="Run programs in the sandbox.")
app.add_typer(verify_app, name="verify", help="Check answers for equivalence.")
app.command(
    name="decouple", help="GSM8K-style seeds -> number-independent templates (JSONL) or a reason."
)(decouple_command)
app.add_typer(prompts_app, name="prompts", help="List, show and export the LLM prompt templates.")
app.add_typer(train_app, name="train", help="Fine-tune on a build's shards (SFT, DPO) with TRL.")
app.command(name="eval", help="Score a model on a benchmark: accuracy with a 95% CI.")(eval_command)
app.add_typer(export_app, name="export", help="Publish a dataset: the Hub, or a clean copy.")


def _click_exception() -> type[Exception]:
    """The ClickException class of the click that typer really uses.

    typer now bundles its own copy (`typer._click`), whose exceptions are not the `click`
    package's; older typer uses `click` itself. Ask typer's core module which one it imports.
    """
    import typer.core

    click_module = getattr(typer.core, "_click", None)
    if click_module is None:
        import click as click_module
    return click_module.exceptions.ClickException


def main() -> None:
    """Console entry point: run the app, turning library errors into one-line messages and
    usage errors into click's usage line plus one error line (exit 2), never a traceback."""
    click_error = _click_exception()
    try:
        app(standalone_mode=False, prog_name="mathsynth")
    except MathsynthError as exc:
        # Escaped: a message may hold brackets ("pip install 'mathsynth[train]'").
        err_console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[red]interrupted[/]; rerun the same command to resume")
        sys.exit(130)
    except click_error as exc:
        exc.show()  # type: ignore[attr-defined]
        sys.exit(exc.exit_code)  # type: ignore[attr-defined]
    except typer.Abort:
        sys.exit(1)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
