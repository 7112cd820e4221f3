"""The client's retries of UNAVAILABLE: Validate and GetJwks, never Login or Refresh (the
token managers retry Refresh with their own backoff); the same rules for the blocking and
the asyncio client."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator
from concurrent import futures

import grpc
import grpc.aio
import pytest
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc
from authsvc_client import (
    AsyncAuthsvcClient,
    AuthServiceUnavailable,
    AuthsvcClient,
    CallRetry,
    Credentials,
    VerifierUnavailable,
)

FAST = CallRetry(attempts=4, backoff_initial=0.001, backoff_max=0.002)


class Flaky(auth_pb2_grpc.AuthServiceServicer):
    """Answers UNAVAILABLE to the first `failures` calls of each method, then succeeds."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: collections.Counter[str] = collections.Counter()

    def _fail(self, method: str, context: grpc.ServicerContext) -> None:
        self.calls[method] += 1
        if self.calls[method] <= self.failures:
            context.abort(grpc.StatusCode.UNAVAILABLE, "stopping")

    def Validate(self, request: object, context: grpc.ServicerContext) -> auth_pb2.ValidateResponse:
        self._fail("Validate", context)
        return auth_pb2.ValidateResponse(valid=True)

    def GetJwks(self, request: object, context: grpc.ServicerContext) -> auth_pb2.GetJwksResponse:
        self._fail("GetJwks", context)
        return auth_pb2.GetJwksResponse(jwks_json='{"keys": []}')

    def Refresh(self, request: object, context: grpc.ServicerContext) -> auth_pb2.RefreshResponse:
        self._fail("Refresh", context)
        return auth_pb2.RefreshResponse(access_token="a", refresh_token="r", expires_in=60)

    def Login(self, request: object, context: grpc.ServicerContext) -> auth_pb2.LoginResponse:
        self._fail("Login", context)
        return auth_pb2.LoginResponse(access_token="a", refresh_token="r", expires_in=60)

    def Revoke(self, request: object, context: grpc.ServicerContext) -> auth_pb2.RevokeResponse:
        self._fail("Revoke", context)
        return auth_pb2.RevokeResponse()


@pytest.fixture
def flaky() -> Iterator[tuple[Flaky, str]]:
    servicer = Flaky(failures=2)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    auth_pb2_grpc.add_AuthServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def test_idempotent_calls_are_retried_and_login_is_not(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky
    with grpc.insecure_channel(target) as channel:
        client = AuthsvcClient(channel, retry=FAST)
        client.validate("token", "", [])
        assert client.get_jwks()
        with pytest.raises(AuthServiceUnavailable):
            client.refresh("rt1.x")
        with pytest.raises(AuthServiceUnavailable):
            client.login(Credentials.password("alice", "pw"))
    assert servicer.calls == {"Validate": 3, "GetJwks": 3, "Refresh": 1, "Login": 1}


def test_retries_are_bounded(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky
    with grpc.insecure_channel(target) as channel:
        with pytest.raises(VerifierUnavailable):
            AuthsvcClient(channel, retry=CallRetry(attempts=2)).validate("token", "", [])
    assert servicer.calls["Validate"] == 2


def test_the_asyncio_client_retries_the_same_way(flaky: tuple[Flaky, str]) -> None:
    servicer, target = flaky

    async def calls() -> None:
        async with grpc.aio.insecure_channel(target) as channel:
            client = AsyncAuthsvcClient(channel, retry=FAST)
            await client.validate("token", "", [])
            assert await client.get_jwks()
            with pytest.raises(AuthServiceUnavailable):
                await client.refresh("rt1.x")
            with pytest.raises(AuthServiceUnavailable):
                await client.login(Credentials.password("alice", "pw"))

    asyncio.run(calls())
    assert servicer.calls == {"Validate": 3, "GetJwks": 3, "Refresh": 1, "Login": 1}
