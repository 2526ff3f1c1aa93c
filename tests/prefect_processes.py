"""Real Prefect processes for tests: `mathsynth deploy`, a `prefect worker`, deployment runs.

Used by tests/test_deploy.py (against the session's test server) and
tests/test_production_stack.py (against a server on PostgreSQL + Redis).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
PREFECT = str(BIN / "prefect")


def nightly_config(directory: Path, name: str) -> Path:
    """A small YAML build config with a relative output dir (resolved where the worker runs)."""
    path = directory / f"{name}.yaml"
    path.write_text(
        f"name: {name}\nmax_seeds: 2\nvariants: 3\ngenerators: [infinitymath]\n"
        f"out: data/{name}\nschedule:\n  cron: '30 4 * * *'\n  timezone: Europe/Paris\n"
    )
    return path


@contextmanager
def worker(pool: str, cwd: Path, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    """`prefect worker start --pool POOL` in `cwd` until the block ends."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [PREFECT, "worker", "start", "--pool", pool],
            cwd=cwd,
            env={
                **env,
                "PREFECT_WORKER_QUERY_SECONDS": "1",
                "PREFECT_WORKER_PREFETCH_SECONDS": "5",
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def run_deployment(
    name: str, env: dict[str, str], cwd: Path, timeout: float, **params: Any
) -> subprocess.CompletedProcess[str]:
    """`prefect deployment run NAME --param k=v ... --watch`: returns when the run is final."""
    args = [PREFECT, "deployment", "run", name, "--watch", "--watch-timeout", str(int(timeout))]
    for key, value in params.items():
        args += ["--param", f"{key}={value}"]
    return subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout + 60
    )


def flow_runs_of(deployment_name: str, env: dict[str, str]) -> list[dict[str, Any]]:
    """The deployment's flow runs as the API reports them (state, parameters, id)."""
    code = (
        "import json, sys\n"
        "from prefect.client.orchestration import get_client\n"
        "from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId\n"
        "with get_client(sync_client=True) as c:\n"
        "    d = c.read_deployment_by_name(sys.argv[1])\n"
        "    f = DeploymentFilter(id=DeploymentFilterId(any_=[d.id]))\n"
        "    runs = c.read_flow_runs(deployment_filter=f)\n"
        "    print(json.dumps([{'id': str(r.id), 'state': r.state_name,\n"
        "        'parameters': r.parameters} for r in runs]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, deployment_name],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def wait_until(predicate: Any, timeout: float, interval: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False
