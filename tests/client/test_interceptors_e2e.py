"""Client interceptors, blocking and asyncio, against a real protected service."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import grpc
import grpc.aio
import pytest
from authsvc_client import (
    AsyncAuthsvcClient,
    AsyncTokenManager,
    Credentials,
    Replayable,
    TokenManager,
    aio_insecure_channel,
    insecure_channel,
)

from tests.client.target import Target, aio_stubs, stubs
from tests.harness import Harness


@pytest.mark.parametrize("aio_server", [False, True], ids=["grpc-server", "aio-server"])
def test_sync_channel_all_four_kinds(
    make_manager: Callable[..., TokenManager],
    make_target: Callable[..., Target],
    creds: Credentials,
    aio_server: bool,
) -> None:
    target = make_target(aio=aio_server)
    manager = make_manager(credentials=creds)
    with insecure_channel(target.address, manager) as channel:
        s = stubs(channel)
        assert s["unary"](b"hi", timeout=10) == b"hi|svc-caller"
        assert list(s["server_stream"](b"hi", timeout=10)) == [
            b"hi|svc-caller|0", b"hi|svc-caller|1", b"hi|svc-caller|2"
        ]  # fmt: skip
        assert s["client_stream"](iter([b"a", b"b"]), timeout=10) == b"a,b|svc-caller"
        assert list(s["bidi"](iter([b"x", b"y"]), timeout=10)) == [
            b"x|svc-caller", b"y|svc-caller"
        ]  # fmt: skip
        assert s["public"](b"", timeout=10) == b"public|none"


@pytest.mark.parametrize("aio_server", [False, True], ids=["grpc-server", "aio-server"])
def test_aio_channel_all_four_kinds(
    auth: Harness, make_target: Callable[..., Target], creds: Credentials, aio_server: bool
) -> None:
    target = make_target(aio=aio_server)

    async def main() -> None:
        async with grpc.aio.insecure_channel(auth.target) as authsvc:
            manager = AsyncTokenManager(
                AsyncAuthsvcClient(authsvc), credentials=creds, clock=auth.clock.now
            )
            async with aio_insecure_channel(target.address, manager) as channel:
                s = aio_stubs(channel)
                assert await s["unary"](b"hi", timeout=10) == b"hi|svc-caller"
                got = [m async for m in s["server_stream"](b"hi", timeout=10)]
                assert got == [b"hi|svc-caller|0", b"hi|svc-caller|1", b"hi|svc-caller|2"]
                assert await s["client_stream"](iter([b"a", b"b"])) == b"a,b|svc-caller"
                got = [m async for m in s["bidi"](iter([b"x", b"y"]), timeout=10)]
                assert got == [b"x|svc-caller", b"y|svc-caller"]
                assert await s["public"](b"", timeout=10) == b"public|none"

    asyncio.run(main())


def _revoke_current_access_token(auth: Harness, manager: Any) -> str:
    tokens = manager.tokens
    assert tokens is not None
    auth.revoke(tokens.access_token)
    return str(tokens.access_token)


KINDS = ["unary", "server_stream", "client_stream", "bidi"]


def _call(s: dict[str, Any], kind: str) -> Any:
    if kind == "unary":
        return s["unary"](b"hi", timeout=10)
    if kind == "server_stream":
        return list(s["server_stream"](b"hi", timeout=10))
    if kind == "client_stream":
        return s["client_stream"](Replayable([b"a", b"b"]), timeout=10)
    return list(s["bidi"]((b"x", b"y"), timeout=10))


@pytest.mark.parametrize("kind", KINDS)
def test_sync_retries_once_after_unauthenticated(
    auth: Harness,
    make_manager: Callable[..., TokenManager],
    make_target: Callable[..., Target],
    creds: Credentials,
    kind: str,
) -> None:
    target = make_target(confirm=True)  # sees the revocation at once
    manager = make_manager(credentials=creds)
    with insecure_channel(target.address, manager) as channel:
        s = stubs(channel)
        _call(s, kind)
        revoked = _revoke_current_access_token(auth, manager)
        _call(s, kind)
    assert manager.tokens is not None and manager.tokens.access_token != revoked
    assert auth.rpc_counts["Refresh"] == 1
    method = {"unary": "Unary", "server_stream": "ServerStream",
              "client_stream": "ClientStream", "bidi": "Bidi"}[kind]  # fmt: skip
    assert target.attempts[method] == 3  # first call, refused call, its one retry


@pytest.mark.parametrize("kind", KINDS)
def test_aio_retries_once_after_unauthenticated(
    auth: Harness, make_target: Callable[..., Target], creds: Credentials, kind: str
) -> None:
    target = make_target(confirm=True, aio=True)

    async def call(s: dict[str, Any]) -> Any:
        if kind == "unary":
            return await s["unary"](b"hi", timeout=10)
        if kind == "server_stream":
            return [m async for m in s["server_stream"](b"hi", timeout=10)]
        if kind == "client_stream":
            return await s["client_stream"](Replayable([b"a", b"b"]), timeout=10)
        return [m async for m in s["bidi"]([b"x", b"y"], timeout=10)]

    async def main() -> None:
        async with grpc.aio.insecure_channel(auth.target) as authsvc:
            manager = AsyncTokenManager(
                AsyncAuthsvcClient(authsvc), credentials=creds, clock=auth.clock.now
            )
            async with aio_insecure_channel(target.address, manager) as channel:
                s = aio_stubs(channel)
                first = await call(s)
                revoked = _revoke_current_access_token(auth, manager)
                assert await call(s) == first
                assert manager.tokens is not None and manager.tokens.access_token != revoked

    asyncio.run(main())
    assert auth.rpc_counts["Refresh"] == 1
    method = {"unary": "Unary", "server_stream": "ServerStream",
              "client_stream": "ClientStream", "bidi": "Bidi"}[kind]  # fmt: skip
    assert target.attempts[method] == 3


def test_one_shot_request_streams_are_not_retried(
    auth: Harness,
    make_manager: Callable[..., TokenManager],
    make_target: Callable[..., Target],
    creds: Credentials,
) -> None:
    target = make_target(confirm=True)
    manager = make_manager(credentials=creds)
    with insecure_channel(target.address, manager) as channel:
        s = stubs(channel)
        s["unary"](b"hi", timeout=10)
        _revoke_current_access_token(auth, manager)
        with pytest.raises(grpc.RpcError) as info:
            s["client_stream"](iter([b"a"]), timeout=10)  # a one-shot iterator
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert target.attempts["ClientStream"] == 1
    assert auth.rpc_counts["Refresh"] == 0


def test_no_retry_storm_when_the_target_keeps_refusing(
    auth: Harness,
    make_manager: Callable[..., TokenManager],
    make_target: Callable[..., Target],
    creds: Credentials,
) -> None:
    target = make_target(audience="somebody-else")  # refuses every token we get
    manager = make_manager(credentials=creds)
    with insecure_channel(target.address, manager) as channel:
        s = stubs(channel)
        for _ in range(10):
            with pytest.raises(grpc.RpcError) as info:
                s["unary"](b"hi", timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert target.attempts["Unary"] == 11  # the first call was retried once, no others
    assert auth.rpc_counts["Refresh"] == 1
    assert auth.rpc_counts["Login"] == 1


def test_other_status_codes_are_not_retried(
    make_manager: Callable[..., TokenManager],
    make_target: Callable[..., Target],
    auth: Harness,
) -> None:
    reader = Credentials.service_account("reader", auth.create_client("reader", ("read",)))
    target = make_target()
    manager = make_manager(credentials=reader)
    with insecure_channel(target.address, manager) as channel:
        with pytest.raises(grpc.RpcError) as info:
            stubs(channel)["client_stream"](Replayable([b"a"]), timeout=10)  # needs write
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert target.attempts["ClientStream"] == 1
    assert auth.rpc_counts["Refresh"] == 0
