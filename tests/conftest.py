"""Shared fixtures. Prefect runs against a real temporary server (prefect_test_harness)."""

from __future__ import annotations

import os
from collections.abc import Iterator

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
