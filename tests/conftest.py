"""Shared fixtures. Prefect runs against a real temporary server (prefect_test_harness)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Keep every test's Prefect state out of the developer's ~/.prefect.
os.environ.setdefault("PREFECT_HOME", "/tmp/mathsynth-test-prefect")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture()
def prefect_env(prefect_harness: None) -> dict[str, str]:
    """Environment for a `mathsynth` subprocess that talks to the test harness's server
    (saves each CLI run the start of its own temporary server)."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    return env


@pytest.fixture(scope="session")
def harness_env(prefect_harness: None) -> dict[str, str]:
    """`prefect_env` for session-scoped fixtures."""
    from prefect.settings import PREFECT_API_URL

    env = dict(os.environ)
    env["PREFECT_API_URL"] = str(PREFECT_API_URL.value())
    return env


@pytest.fixture(scope="session")
def default_build(harness_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole default build (`mathsynth build`, the embedded default), made once per test
    session through the console script and shared by the tests that judge its rows."""
    from console import mathsynth

    out = tmp_path_factory.mktemp("default-build") / "default"
    proc = mathsynth("build", "--out", str(out), env=harness_env, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out
