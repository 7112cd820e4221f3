"""Shared fixtures: a real authsvc server on a real port over a private redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Harness, HarnessFactory, harness_factory
from tests.topologies import ClusterDeployment, SentinelDeployment


@pytest.fixture
def authsvc_server_factory(tmp_path: Path) -> Iterator[HarnessFactory]:
    """Call with Settings overrides (e.g. access_ttl_seconds=60) to get a Harness."""
    yield from harness_factory(tmp_path)


@pytest.fixture
def authsvc_server(authsvc_server_factory: HarnessFactory) -> Harness:
    """A running authsvc with default settings, its own Redis and a FakeClock."""
    return authsvc_server_factory()


@pytest.fixture(scope="module")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterDeployment]:
    """A real 3-master / 3-replica Redis Cluster, shared by the tests of one module."""
    cluster = ClusterDeployment(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def redis_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SentinelDeployment]:
    """A real Sentinel group (1 master, 2 replicas, 3 sentinels), shared by one module."""
    group = SentinelDeployment(tmp_path_factory.mktemp("sentinel")).start()
    try:
        yield group
    finally:
        group.stop()
