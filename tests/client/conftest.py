"""Fixtures for the client library's end-to-end tests (real authsvc, Redis and target)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from authsvc_client import AuthsvcClient, Credentials, TokenManager

from tests.client.target import Target
from tests.harness import Harness, HarnessFactory

ACCESS_TTL = 60


@pytest.fixture
def auth(authsvc_server_factory: HarnessFactory) -> Harness:
    """authsvc with 60 s access tokens."""
    return authsvc_server_factory(access_ttl_seconds=ACCESS_TTL)


@pytest.fixture
def creds(auth: Harness) -> Credentials:
    """A service account allowed read and write."""
    return Credentials.service_account("svc-caller", auth.create_client("svc-caller"))


@pytest.fixture
def authsvc_channel(auth: Harness) -> Iterator[grpc.Channel]:
    channel = grpc.insecure_channel(auth.target)
    yield channel
    channel.close()


@pytest.fixture
def make_manager(auth: Harness, authsvc_channel: grpc.Channel) -> Callable[..., TokenManager]:
    """TokenManager factory on the harness's clock, without jitter."""

    def make(**kwargs: Any) -> TokenManager:
        kwargs.setdefault("clock", auth.clock.now)
        kwargs.setdefault("random", lambda: 0.0)
        return TokenManager(AuthsvcClient(authsvc_channel), **kwargs)

    return make


@pytest.fixture
def make_target(auth: Harness) -> Iterator[Callable[..., Target]]:
    """Target factory; every target is closed at the end."""
    made: list[Target] = []

    def make(**kwargs: Any) -> Target:
        kwargs.setdefault("harness", auth)
        target = Target(**kwargs)
        made.append(target)
        return target

    yield make
    for target in made:
        target.close()
