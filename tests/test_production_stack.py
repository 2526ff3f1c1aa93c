"""The production shape of docker-compose.yml, for real: PostgreSQL and Redis (Debian's
`postgresql` and `redis-server`, installed by .ci/run), a Prefect server on them started
with `--no-services`, the background services in their own process
(`prefect server services start`), and a worker that completes a deployment run.

The server's settings are docker-compose.yml's own `x-prefect-env` block, with the compose
host names replaced by this machine's addresses, so the test checks the file's shape and
not a copy of it. PostgreSQL refuses to run as root: as root, the cluster belongs to the
`postgres` user the Debian package creates and its commands run through `runuser`.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import yaml
from console import mathsynth
from dataset_checks import read_table
from prefect_processes import (
    PREFECT,
    flow_runs_of,
    nightly_config,
    run_deployment,
    wait_until,
    worker,
)

from mathsynth.flows.deploy import FLOW_NAME

ROOT = Path(__file__).resolve().parents[1]
WHY = ".ci/run installs them with apt-get (postgresql, redis-server)"


def _pg_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_db_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@contextmanager
def postgres(bindir: Path) -> Iterator[int]:
    """A throwaway cluster (trust auth, user `prefect`, database `prefect`) on a free port."""
    # Outside pytest's tmp dirs: those are private to root, and the cluster's owner must
    # be able to reach its data directory.
    base = Path(tempfile.mkdtemp(prefix="mathsynth-pg-"))
    data, port = base / "data", _free_port()
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        base.chmod(0o700)
    run = {"check": True, "capture_output": True, "timeout": 120}
    try:
        subprocess.run(
            _as_db_user([str(bindir / "initdb"), "-D", str(data), "-U", "prefect", "-A", "trust"]),
            **run,
        )
        options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_db_user(
                [
                    str(bindir / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(base / "log"),
                    "-w",
                    "start",
                ]
            ),
            **run,
        )
        try:
            subprocess.run(
                [
                    str(bindir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "prefect",
                    "prefect",
                ],
                **run,
            )
            yield port
        finally:
            subprocess.run(
                _as_db_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]),
                capture_output=True,
                timeout=60,
            )
    finally:
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def redis(binary: str, workdir: Path) -> Iterator[int]:
    port = _free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(20)


def compose_prefect_env(pg_port: int, redis_port: int) -> dict[str, str]:
    """docker-compose.yml's `x-prefect-env`, pointed at this machine's services."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = {k: str(v) for k, v in compose["x-prefect-env"].items()}
    env["PREFECT_API_DATABASE_CONNECTION_URL"] = env["PREFECT_API_DATABASE_CONNECTION_URL"].replace(
        "@postgres:5432/", f"@127.0.0.1:{pg_port}/"
    )
    assert env["PREFECT_REDIS_MESSAGING_HOST"] == "redis"
    env["PREFECT_REDIS_MESSAGING_HOST"] = "127.0.0.1"
    env["PREFECT_REDIS_MESSAGING_PORT"] = str(redis_port)
    env["PREFECT_SERVER_API_HOST"] = "127.0.0.1"
    return env


@contextmanager
def process(cmd: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            yield proc
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"server not healthy: {log.read_text(errors='replace')[-3000:]}")


def psql(bindir: Path, port: int, sql: str) -> str:
    proc = subprocess.run(
        [
            str(bindir / "psql"),
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-U",
            "prefect",
            "-d",
            "prefect",
            "-tAc",
            sql,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return proc.stdout.strip()


@pytest.mark.slow
def test_compose_shape_postgres_redis_services_and_a_worker(tmp_path: Path) -> None:
    bindir, redis_bin = _pg_bin(), shutil.which("redis-server")
    if bindir is None or redis_bin is None:
        missing = [n for n, b in (("postgresql", bindir), ("redis-server", redis_bin)) if not b]
        pytest.skip(f"{', '.join(missing)} not installed; {WHY}")
    pytest.importorskip("prefect_redis", reason="the dev extra installs prefect-redis")

    with ExitStack() as stack:
        pg_port = stack.enter_context(postgres(bindir))
        redis_port = stack.enter_context(redis(redis_bin, tmp_path))
        port = _free_port()
        api = f"http://127.0.0.1:{port}/api"
        base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")} | {
            "PREFECT_HOME": str(tmp_path / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        server_env = {**base, **compose_prefect_env(pg_port, redis_port)}
        server_log = tmp_path / "server.log"
        server = stack.enter_context(
            process(
                [
                    PREFECT,
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--no-services",
                ],
                server_env,
                server_log,
            )
        )
        wait_healthy(api, server, server_log)
        services_log = tmp_path / "services.log"
        # A short scheduler loop so that the deployment's cron runs appear within the test.
        services_env = {**server_env, "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2"}
        services = stack.enter_context(
            process([PREFECT, "server", "services", "start"], services_env, services_log)
        )

        client_env = {**base, "PREFECT_API_URL": api}
        clone = tmp_path / "clone"
        clone.mkdir()
        config = nightly_config(clone, "wprod")
        deployed = mathsynth("deploy", "--config", config.name, env=client_env, cwd=clone)
        assert deployed.returncode == 0, deployed.stderr + deployed.stdout
        name = f"{FLOW_NAME}/nightly-wprod"

        with worker("mathsynth", clone, client_env, tmp_path / "worker.log"):
            run = run_deployment(name, client_env, clone, timeout=300)
        logs = "".join(
            p.read_text(errors="replace")[-2000:]
            for p in (tmp_path / "worker.log", services_log, server_log)
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:] + logs
        assert services.poll() is None, logs
        runs = flow_runs_of(name, client_env)
        completed = [r for r in runs if r["state"] == "Completed"]
        assert len(completed) == 1, runs
        rows = read_table(clone / "data" / "wprod", "sft")
        assert len(rows) == 2 * 3

        # The state lives in PostgreSQL, and the services did their work on it: the scheduler
        # created the deployment's upcoming cron runs.
        run_id = completed[0]["id"]
        assert psql(bindir, pg_port, f"SELECT state_type FROM flow_run WHERE id = '{run_id}'") == (
            "COMPLETED"
        )
        scheduled = "SELECT count(*) FROM flow_run WHERE state_type = 'SCHEDULED'"
        assert wait_until(lambda: int(psql(bindir, pg_port, scheduled)) > 0, 60), logs
        # Events went from the API through Redis (the messaging broker) to the services'
        # event persister, which wrote them to PostgreSQL.
        events = "SELECT count(*) FROM events WHERE event = 'prefect.flow-run.Completed'"
        assert wait_until(lambda: int(psql(bindir, pg_port, events)) > 0, 60), logs


def _interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${VAR:-default}` / `${VAR:+replacement}` (nested), as `docker compose`
    resolves them, enough to check what the file's expressions give."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("${", i):
            depth, j = 1, i + 2
            while depth:
                depth += (text[j] == "{") - (text[j] == "}")
                j += 1
            body = text[i + 2 : j - 1]
            name, op, rest = body, "", ""
            for candidate in (":-", ":+"):
                if candidate in body:
                    name, _, rest = body.partition(candidate)
                    op = candidate
                    break
            value = env.get(name, "")
            if op == ":-":
                value = value or _interpolate(rest, env)
            elif op == ":+":
                value = _interpolate(rest, env) if value else ""
            out.append(value)
            i = j
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def test_compose_vllm_service_is_what_the_worker_uses() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    vllm, worker_service = compose["services"]["vllm"], compose["services"]["worker"]
    assert vllm["image"].startswith("vllm/vllm-openai")
    assert vllm["profiles"] == ["gpu"]
    command = vllm["command"]
    model = command[command.index("--model") + 1]
    port = command[command.index("--port") + 1]
    assert vllm["deploy"]["resources"]["reservations"]["devices"][0]["capabilities"] == ["gpu"]
    env = worker_service["environment"]
    with_gpu = {"VLLM_MODEL": "Qwen/Qwen2.5-7B-Instruct"}
    assert _interpolate(model, with_gpu) == "Qwen/Qwen2.5-7B-Instruct"
    assert _interpolate(env["MATHSYNTH_LLM__BASE_URL"], with_gpu) == f"http://vllm:{port}/v1"
    assert _interpolate(env["MATHSYNTH_LLM__MODEL"], with_gpu) == "Qwen/Qwen2.5-7B-Instruct"
    # Without the gpu profile the worker builds offline, unless told otherwise.
    assert _interpolate(env["MATHSYNTH_LLM__BASE_URL"], {}) == ""
    assert _interpolate(env["MATHSYNTH_LLM__MODEL"], {}) == ""
    mine = {"MATHSYNTH_LLM__BASE_URL": "http://other/v1", "MATHSYNTH_LLM__MODEL": "m", **with_gpu}
    assert _interpolate(env["MATHSYNTH_LLM__BASE_URL"], mine) == "http://other/v1"
    assert worker_service["depends_on"]["vllm"]["required"] is False
