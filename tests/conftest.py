"""Shared fixtures: a real authsvc server on a real port over a private redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Harness, HarnessFactory, harness_factory


@pytest.fixture
def authsvc_server_factory(tmp_path: Path) -> Iterator[HarnessFactory]:
    """Call with Settings overrides (e.g. access_ttl_seconds=60) to get a Harness."""
    yield from harness_factory(tmp_path)


@pytest.fixture
def authsvc_server(authsvc_server_factory: HarnessFactory) -> Harness:
    """A running authsvc with default settings, its own Redis and a FakeClock."""
    return authsvc_server_factory()
