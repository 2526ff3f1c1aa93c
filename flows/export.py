"""Prefect flows that publish a dataset, for deployments: `export_hub_flow` on its own, and
`build_and_export`, a scheduled build that exports when it finishes. Wiring only: the work is
`storage.hub.export_hub`. The Hub token is read on the worker (HF_TOKEN or its saved login);
it is never a flow parameter, so it never reaches the Prefect API or the UI."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from mathsynth.flows.build import scheduled_build


@task(name="export-hub", cache_policy=NO_CACHE)
def export_hub_task(out: str, repo_id: str, private: bool, revision: str | None) -> dict[str, Any]:
    from mathsynth.storage.hub import export_hub

    return export_hub(Path(out), repo_id, private=private, revision=revision)


@flow(name="mathsynth-export-hub")
def export_hub_flow(
    out: str, repo_id: str, private: bool = False, revision: str | None = None
) -> dict[str, Any]:
    """Upload the finished dataset in `out` to the Hub dataset repo `repo_id`."""
    result = export_hub_task(out, repo_id, private, revision)
    create_markdown_artifact(
        key="export-hub",
        markdown=(
            f"# mathsynth export\n\n`{out}` → [{repo_id}]({result['url']}) "
            f"(revision `{result['revision']}`, commit `{result['commit']}`), "
            f"{len(result['files'])} files\n"
        ),
        description="Hub export",
    )
    return result


@flow(name="mathsynth-build-and-export")
def build_and_export(
    repo_id: str,
    config_path: str | None = None,
    overrides: dict[str, Any] | None = None,
    private: bool = False,
    revision: str | None = None,
) -> dict[str, Any]:
    """Deployment entry point: the scheduled build, then its export to `repo_id`."""
    report = scheduled_build(config_path=config_path, overrides=overrides)
    return export_hub_flow(report["out"], repo_id, private=private, revision=revision)
