"""`mathsynth deploy`: register the scheduled build with a Prefect server, ready for a worker.

The deployment `mathsynth-scheduled-build/nightly-<config name>` runs `scheduled_build` on
the config's cron schedule, on the work pool `schedule.work_pool` (a process pool, created
when missing). Nothing about this machine is recorded in it:

- the entrypoint is the installed module (`mathsynth.flows.build.scheduled_build`), so any
  worker with mathsynth installed can load it, the compose worker's /app included;
- there are no pull steps, and the flow run's working directory is `.`: the directory the
  worker was started in, where a relative `config_path` or output dir then resolves.

`prefect deploy --all` with the repository's prefect.yaml registers the same deployment
once the pool exists; tests/test_deploy.py checks that the two agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import typer

from mathsynth.errors import ConfigError

ENTRYPOINT = "mathsynth.flows.build.scheduled_build"
FLOW_NAME = "mathsynth-scheduled-build"
POOL_TYPE = "process"
# The flow run's working directory, relative to the worker's own (see module docstring).
JOB_VARIABLES = {"working_dir": "."}


class DeployError(ConfigError):
    """The deployment could not be registered (no server configured, unreachable, refused)."""


@dataclass(frozen=True)
class Deployed:
    name: str
    deployment_id: str
    work_pool: str
    pool_created: bool
    cron: str
    timezone: str
    config_path: str | None


def deployment_name(config_name: str) -> str:
    return f"nightly-{config_name}"


def deploy_scheduled_build(
    config_path: str | None, *, name: str | None = None, paused: bool = False
) -> Deployed:
    """Register (or update) the scheduled build; see the module docstring.

    `config_path` is validated here (a bad file is refused before anything is registered)
    and stored as given, so a relative path resolves on the worker, in its directory.
    Failure modes: ConfigError / InputFileError for a bad config; DeployError when
    PREFECT_API_URL is not set, the server does not answer, or the cron is refused.
    """
    from mathsynth.config import load_config

    config = load_config(config_path)
    api_url = _api_url()
    schedule = config.schedule
    try:
        from prefect.schedules import Cron

        cron = Cron(schedule.cron, timezone=schedule.timezone)
    except ValueError as exc:
        raise DeployError(f"invalid schedule.cron {schedule.cron!r}: {exc}") from None

    from prefect.deployments.runner import EntrypointType

    from mathsynth.flows.build import scheduled_build

    created = _ensure_work_pool(schedule.work_pool, api_url)
    full = name or deployment_name(config.name)
    deployment = scheduled_build.to_deployment(
        name=full,
        schedule=cron,
        parameters={"config_path": config_path, "overrides": None},
        work_pool_name=schedule.work_pool,
        job_variables=dict(JOB_VARIABLES),
        entrypoint_type=EntrypointType.MODULE_PATH,
        paused=paused,
        description=f"mathsynth build of config {config_path or '(defaults)'} ({config.name})",
        tags=["mathsynth"],
    )
    try:
        deployment_id = deployment.apply()
    except Exception as exc:  # noqa: BLE001 - any API failure becomes one line
        raise DeployError(
            f"the Prefect server at {api_url} refused the deployment: {exc}"
        ) from None
    return Deployed(
        name=f"{FLOW_NAME}/{full}",
        deployment_id=str(deployment_id),
        work_pool=schedule.work_pool,
        pool_created=created,
        cron=schedule.cron,
        timezone=schedule.timezone,
        config_path=config_path,
    )


def _api_url() -> str:
    from prefect.settings import PREFECT_API_URL

    url = PREFECT_API_URL.value()
    if not url:
        # Without it Prefect would register the deployment on a temporary server that
        # disappears with this command, where no worker will ever see it.
        raise DeployError(
            "PREFECT_API_URL is not set: point it at the Prefect server your workers use "
            "(e.g. export PREFECT_API_URL=http://127.0.0.1:4200/api)"
        )
    return str(url)


def _ensure_work_pool(pool: str, api_url: str) -> bool:
    """Create `pool` as a process pool unless it exists; True when it was created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectNotFound
    from prefect.workers.process import ProcessWorker

    try:
        with get_client(sync_client=True) as client:
            try:
                existing = client.read_work_pool(pool)
            except ObjectNotFound:
                template = ProcessWorker.get_default_base_job_template()
                client.create_work_pool(
                    WorkPoolCreate(name=pool, type=POOL_TYPE, base_job_template=template)
                )
                return True
    except (OSError, RuntimeError) as exc:
        raise DeployError(f"cannot reach the Prefect server at {api_url} ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - httpx errors and friends: one line
        if type(exc).__name__.endswith(("ConnectError", "ConnectTimeout", "TimeoutException")):
            raise DeployError(f"cannot reach the Prefect server at {api_url} ({exc})") from None
        raise
    if existing.type != POOL_TYPE:
        raise DeployError(
            f"work pool {pool!r} exists with type {existing.type!r}; mathsynth deploys to a "
            f"{POOL_TYPE!r} pool (set schedule.work_pool to another name)"
        )
    return False


def deploy_command(
    config: Annotated[
        str | None,
        typer.Option(help="YAML build config the scheduled runs use (its config_path)."),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Deployment name (default nightly-<config name>).")
    ] = None,
    paused: Annotated[bool, typer.Option(help="Register with the schedule paused.")] = False,
) -> None:
    """Register the scheduled build (cron from the config) and create its work pool."""
    from rich.console import Console

    done = deploy_scheduled_build(config, name=name, paused=paused)
    console = Console()
    pool = f"{done.work_pool} ({'created' if done.pool_created else 'existing'})"
    console.print(
        f"registered [bold]{done.name}[/] on work pool {pool}, "
        f"cron '{done.cron}' {done.timezone}, config_path {done.config_path or '(defaults)'}",
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"start a worker where mathsynth is installed: prefect worker start --pool "
        f"{done.work_pool}\nrun it now: prefect deployment run '{done.name}'",
        highlight=False,
        soft_wrap=True,
    )
