"""Shared fixtures. Prefect runs against a real temporary server (prefect_test_harness)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

# Keep every test's Prefect state out of the developer's ~/.prefect.
os.environ.setdefault("PREFECT_HOME", "/tmp/mathsynth-test-prefect")


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
