"""Scheduled builds from a fresh clone: `mathsynth deploy` against a real Prefect server, a
`prefect worker start --pool mathsynth` process, and a deployment run that builds shards."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest
import yaml
from console import assert_one_line_error, mathsynth
from dataset_checks import read_table
from prefect_processes import flow_runs_of, nightly_config, run_deployment, worker

from mathsynth.config import BuildConfig
from mathsynth.flows.deploy import ENTRYPOINT, FLOW_NAME, JOB_VARIABLES

ROOT = Path(__file__).resolve().parents[1]


def read_deployment(name: str) -> dict:
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(name)
        pool = client.read_work_pool(deployment.work_pool_name)
    return {"deployment": deployment, "pool": pool}


@pytest.mark.slow
def test_deploy_then_a_worker_runs_the_scheduled_build(
    tmp_path: Path, prefect_env: dict[str, str]
) -> None:
    # The worker's directory stands for a fresh clone (or the compose worker's /app): the
    # config and the output dir are relative to it, and no path of this test's cwd leaks in.
    clone = tmp_path / "clone"
    clone.mkdir()
    config = nightly_config(clone, "wtest")
    env = {**prefect_env, "PREFECT_HOME": str(tmp_path / "prefect-home")}

    proc = mathsynth("deploy", "--config", config.name, env=env, cwd=clone, timeout=180)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert f"{FLOW_NAME}/nightly-wtest" in proc.stdout
    assert "mathsynth (created)" in proc.stdout

    got = read_deployment(f"{FLOW_NAME}/nightly-wtest")
    deployment, pool = got["deployment"], got["pool"]
    assert pool.type == "process"
    assert deployment.entrypoint == ENTRYPOINT
    assert not deployment.pull_steps
    assert deployment.path is None
    assert deployment.job_variables == JOB_VARIABLES
    assert deployment.parameters["config_path"] == "wtest.yaml"
    (schedule,) = deployment.schedules
    assert schedule.schedule.cron == "30 4 * * *"
    assert schedule.schedule.timezone == "Europe/Paris"
    assert str(tmp_path) not in deployment.model_dump_json()

    # Deploying again updates in place; the pool now exists.
    again = mathsynth("deploy", "--config", config.name, env=env, cwd=clone, timeout=180)
    assert again.returncode == 0 and "mathsynth (existing)" in again.stdout

    other = nightly_config(clone, "wother")
    with worker("mathsynth", clone, env, tmp_path / "worker.log"):
        run = run_deployment(
            f"{FLOW_NAME}/nightly-wtest", env, clone, timeout=300, config_path=other.name
        )
    log = (tmp_path / "worker.log").read_text(errors="replace")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + log[-4000:]
    runs = flow_runs_of(f"{FLOW_NAME}/nightly-wtest", env)
    assert [r["state"] for r in runs] == ["Completed"], runs
    assert runs[0]["parameters"]["config_path"] == "wother.yaml"

    # The run built the config it was given, in the worker's directory.
    rows = read_table(clone / "data" / "wother", "sft")
    assert len(rows) == 2 * 3
    assert all(r["verification"]["status"] == "verified" for r in rows)
    assert not (clone / "data" / "wtest").exists()


def test_deploy_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    env_without_server = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    config = nightly_config(tmp_path, "wbad")
    proc = mathsynth("deploy", "--config", str(config), env=env_without_server, cwd=tmp_path)
    assert_one_line_error(proc, "PREFECT_API_URL")
    missing = mathsynth("deploy", "--config", "nope.yaml", env=env_without_server, cwd=tmp_path)
    assert_one_line_error(missing, "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("schedule:\n  crontab: daily\n")
    refused = mathsynth("deploy", "--config", str(bad), env=env_without_server, cwd=tmp_path)
    assert_one_line_error(refused, "schedule")


def test_prefect_yaml_registers_the_same_deployment() -> None:
    """`prefect deploy --all` with the repo's prefect.yaml and `mathsynth deploy` agree."""
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    assert spec["pull"] == []
    by_name = {d["name"]: d for d in spec["deployments"]}
    defaults = BuildConfig()
    deployment = by_name[f"nightly-{defaults.name}"]
    assert deployment["name"] == f"nightly-{defaults.name}"
    assert deployment["entrypoint"] == ENTRYPOINT
    assert deployment["work_pool"]["name"] == defaults.schedule.work_pool
    assert deployment["work_pool"]["job_variables"] == JOB_VARIABLES
    assert deployment["schedules"] == [
        {"cron": defaults.schedule.cron, "timezone": defaults.schedule.timezone}
    ]
    assert set(deployment["parameters"]) == {"config_path", "overrides"}
    # The on-demand training loop: a module entrypoint too (no host path), and it resolves.
    loop = by_name["build-train-eval"]
    assert loop["work_pool"]["job_variables"] == JOB_VARIABLES
    module, _, attr = loop["entrypoint"].rpartition(".")
    flow_obj = getattr(importlib.import_module(module), attr)
    assert flow_obj.name == "mathsynth-build-train-eval"
    assert set(loop["parameters"]) <= set(inspect.signature(flow_obj.fn).parameters)
