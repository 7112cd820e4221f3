"""TokenManager and AsyncTokenManager against the real authsvc (its RPCs counted there)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import grpc.aio
import pytest
from authsvc_api.v1 import auth_pb2
from authsvc_client import (
    AsyncAuthsvcClient,
    AsyncTokenManager,
    AuthServiceUnavailable,
    AuthsvcClient,
    Credentials,
    FileTokenStore,
    InsecureTransportError,
    ReauthenticationRequired,
    RefreshPolicy,
    TokenManager,
    Tokens,
    TokenState,
    aio_insecure_channel,
    insecure_channel,
)

from tests.client.conftest import ACCESS_TTL
from tests.client.target import Target, aio_stubs, stubs
from tests.harness import Harness


def test_logs_in_with_a_service_account_and_calls(
    auth: Harness,
    make_manager: Callable[..., TokenManager],
    make_target: Callable[..., Target],
    creds: Credentials,
) -> None:
    target = make_target()
    manager = make_manager(credentials=creds)
    with insecure_channel(target.address, manager) as channel:
        for _ in range(5):
            assert stubs(channel)["unary"](b"x", timeout=10) == b"x|svc-caller"
    assert auth.rpc_counts["Login"] == 1 and auth.rpc_counts["Refresh"] == 0


def test_refreshes_before_expiry_not_after_a_failure(
    auth: Harness,
    make_manager: Callable[..., TokenManager],
    make_target: Callable[..., Target],
    creds: Credentials,
) -> None:
    target = make_target()
    manager = make_manager(credentials=creds)
    with insecure_channel(target.address, manager) as channel:
        unary = stubs(channel)["unary"]
        unary(b"x", timeout=10)
        first = manager.tokens
        auth.clock.advance(ACCESS_TTL - 31)  # margin for 60 s: min(max(30, 6), 30) = 30 s
        unary(b"x", timeout=10)
        assert manager.tokens == first
        auth.clock.advance(2)  # now inside the margin, still valid
        assert manager.state() is TokenState.STALE
        unary(b"x", timeout=10)
        assert manager.tokens != first
        auth.clock.advance(ACCESS_TTL * 10)  # long past expiry: refresh first, then call
        unary(b"x", timeout=10)
    assert auth.rpc_counts["Refresh"] == 2
    assert target.attempts["Unary"] == 4  # never refused, never retried


def test_a_three_second_token_is_not_refreshed_on_every_call(
    authsvc_server_factory: Callable[..., Harness],
) -> None:
    h = authsvc_server_factory(access_ttl_seconds=3)
    secret = h.create_client("short")
    with grpc.insecure_channel(h.target) as authsvc:
        manager = TokenManager(
            AuthsvcClient(authsvc),
            credentials=Credentials.service_account("short", secret),
            clock=h.clock.now,
            random=lambda: 0.0,
        )
        for _ in range(30):  # 6 s in steps of 0.2 s
            manager.access_token()
            h.clock.advance(0.2)
    assert h.rpc_counts["Login"] == 1
    assert h.rpc_counts["Refresh"] == 3  # at 1.6, 3.2 and 4.8 s: half the lifetime each


def test_100_threads_with_an_expired_token_cause_one_refresh(
    auth: Harness,
    make_manager: Callable[..., TokenManager],
    make_target: Callable[..., Target],
    creds: Credentials,
) -> None:
    target = make_target()
    manager = make_manager(credentials=creds)
    with insecure_channel(target.address, manager) as channel:
        unary = stubs(channel)["unary"]
        unary(b"warm-up", timeout=10)
        auth.clock.advance(ACCESS_TTL + 1)
        start = threading.Barrier(100)

        def call(i: int) -> bytes:
            start.wait(timeout=30)
            return unary(str(i).encode(), timeout=30)  # type: ignore[no-any-return]

        with ThreadPoolExecutor(max_workers=100) as pool:
            results = list(pool.map(call, range(100)))
    assert results == [f"{i}|svc-caller".encode() for i in range(100)]
    assert auth.rpc_counts["Refresh"] == 1
    assert auth.rpc_counts["Login"] == 1
    assert target.attempts["Unary"] == 101


def test_100_tasks_with_an_expired_token_cause_one_refresh(
    auth: Harness, make_target: Callable[..., Target], creds: Credentials
) -> None:
    target = make_target(aio=True)

    async def main() -> list[bytes]:
        async with grpc.aio.insecure_channel(auth.target) as authsvc:
            manager = AsyncTokenManager(
                AsyncAuthsvcClient(authsvc), credentials=creds, clock=auth.clock.now
            )
            async with aio_insecure_channel(target.address, manager) as channel:
                unary = aio_stubs(channel)["unary"]
                await unary(b"warm-up", timeout=10)
                auth.clock.advance(ACCESS_TTL + 1)
                calls = [unary(str(i).encode(), timeout=30) for i in range(100)]
                return list(await asyncio.gather(*calls))

    results = asyncio.run(main())
    assert results == [f"{i}|svc-caller".encode() for i in range(100)]
    assert auth.rpc_counts["Refresh"] == 1
    assert auth.rpc_counts["Login"] == 1


def test_100_threads_within_the_margin_cause_one_refresh(
    auth: Harness, make_manager: Callable[..., TokenManager], creds: Credentials
) -> None:
    manager = make_manager(credentials=creds)
    old = manager.access_token()
    auth.clock.advance(ACCESS_TTL - 10)  # stale, still valid
    start = threading.Barrier(100)

    def token(_: int) -> str:
        start.wait(timeout=30)
        return manager.access_token()

    with ThreadPoolExecutor(max_workers=100) as pool:
        tokens = set(pool.map(token, range(100)))
    assert auth.rpc_counts["Refresh"] == 1
    assert tokens <= {old, manager.access_token()}  # the still-valid one, or the new one


def test_logs_in_again_after_the_session_is_revoked(
    auth: Harness,
    make_manager: Callable[..., TokenManager],
    make_target: Callable[..., Target],
    creds: Credentials,
) -> None:
    target = make_target()
    manager = make_manager(credentials=creds)
    with insecure_channel(target.address, manager) as channel:
        unary = stubs(channel)["unary"]
        unary(b"x", timeout=10)
        tokens = manager.tokens
        assert tokens is not None
        auth.revoke(tokens.refresh_token, auth_pb2.REVOKE_SCOPE_SESSION)
        auth.clock.advance(ACCESS_TTL + 1)
        assert unary(b"y", timeout=10) == b"y|svc-caller"
    assert auth.rpc_counts["Refresh"] == 1  # rejected
    assert auth.rpc_counts["Login"] == 2
    assert manager.tokens is not None and manager.tokens.session_id != tokens.session_id


def test_without_credentials_a_revoked_session_requires_reauthentication(
    auth: Harness,
    make_manager: Callable[..., TokenManager],
    make_target: Callable[..., Target],
    creds: Credentials,
) -> None:
    target = make_target()
    login = auth.login(creds.principal, creds.secret)
    manager = make_manager(
        tokens=Tokens(login.access_token, login.refresh_token, expires_in=login.expires_in)
    )
    with insecure_channel(target.address, manager) as channel:
        unary = stubs(channel)["unary"]
        assert unary(b"x", timeout=10) == b"x|svc-caller"
        auth.revoke(login.refresh_token, auth_pb2.REVOKE_SCOPE_SESSION)
        auth.clock.advance(ACCESS_TTL + 1)
        with pytest.raises(grpc.RpcError) as info:
            unary(b"y", timeout=10)
        with pytest.raises(ReauthenticationRequired):
            manager.access_token()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert isinstance(info.value.__cause__, ReauthenticationRequired)
    assert "log in again" in str(info.value.details())
    assert auth.rpc_counts["Refresh"] == 1  # the dead session is not retried
    assert target.attempts["Unary"] == 1  # the failing call never reached the target


def test_aio_without_credentials_requires_reauthentication(
    auth: Harness, creds: Credentials
) -> None:
    login = auth.login(creds.principal, creds.secret)

    async def main() -> None:
        async with grpc.aio.insecure_channel(auth.target) as authsvc:
            manager = AsyncTokenManager(
                AsyncAuthsvcClient(authsvc),
                tokens=Tokens(login.access_token, login.refresh_token, expires_in=ACCESS_TTL),
                clock=auth.clock.now,
            )
            auth.revoke(login.refresh_token, auth_pb2.REVOKE_SCOPE_SESSION)
            auth.clock.advance(ACCESS_TTL + 1)
            with pytest.raises(ReauthenticationRequired):
                await manager.access_token()
            async with aio_insecure_channel("127.0.0.1:1", manager) as channel:
                with pytest.raises(grpc.aio.AioRpcError) as info:
                    await aio_stubs(channel)["unary"](b"x", timeout=10)
            assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert isinstance(info.value.__cause__, ReauthenticationRequired)

    asyncio.run(main())
    assert auth.rpc_counts["Refresh"] == 1


def test_authsvc_unavailable_for_a_while_then_back(
    auth: Harness,
    make_manager: Callable[..., TokenManager],
    make_target: Callable[..., Target],
    creds: Credentials,
) -> None:
    target = make_target()  # verifies locally, so it works while authsvc's Redis is down
    restarts: list[float] = []

    def backoff(seconds: float) -> None:
        if not restarts:
            auth.start_redis()
        restarts.append(seconds)
        stop = threading.Event()
        stop.wait(seconds)  # the library's own backoff, not test synchronisation

    policy = RefreshPolicy(backoff_initial=0.05, backoff_max=0.5, max_attempts=30)
    manager = make_manager(credentials=creds, sleep=backoff, policy=policy)
    with insecure_channel(target.address, manager) as channel:
        unary = stubs(channel)["unary"]
        unary(b"x", timeout=10)
        before = manager.tokens
        auth.stop_redis()
        auth.clock.advance(ACCESS_TTL - 10)  # due for refresh, still valid
        assert unary(b"stale", timeout=10) == b"stale|svc-caller"  # kept the valid token
        assert manager.tokens == before
        auth.clock.advance(20)  # now expired: retried with backoff until Redis is back
        assert unary(b"back", timeout=10) == b"back|svc-caller"
    assert restarts  # it did back off
    assert manager.tokens != before


def test_authsvc_down_surfaces_as_unauthenticated_not_unavailable(
    auth: Harness,
    make_manager: Callable[..., TokenManager],
    make_target: Callable[..., Target],
    creds: Credentials,
) -> None:
    target = make_target()
    sleeps: list[float] = []
    policy = RefreshPolicy(max_attempts=3)
    manager = make_manager(credentials=creds, sleep=sleeps.append, policy=policy)
    with insecure_channel(target.address, manager) as channel:
        unary = stubs(channel)["unary"]
        unary(b"x", timeout=10)
        auth.stop_redis()
        auth.clock.advance(ACCESS_TTL + 1)
        with pytest.raises(grpc.RpcError) as info:
            unary(b"y", timeout=10)
        refreshes = auth.rpc_counts["Refresh"]
        with pytest.raises(grpc.RpcError):
            unary(b"y", timeout=10)  # within the backoff: fails fast, no new attempt
        assert auth.rpc_counts["Refresh"] == refreshes == 3
        auth.start_redis()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert isinstance(info.value.__cause__, AuthServiceUnavailable)
    assert len(sleeps) == 2


def test_refuses_bearer_tokens_over_insecure_remote_channels(
    make_manager: Callable[..., TokenManager], creds: Credentials
) -> None:
    manager = make_manager(credentials=creds)
    with pytest.raises(InsecureTransportError):
        insecure_channel("orders.example.com:50051", manager)
    with pytest.raises(InsecureTransportError):
        insecure_channel("dns:///10.0.0.5:443", manager)
    insecure_channel("orders.example.com:50051", manager, allow_insecure=True).close()
    insecure_channel("localhost:1", manager).close()


def test_store_shares_rotation_between_managers_and_runs(
    auth: Harness,
    make_manager: Callable[..., TokenManager],
    creds: Credentials,
    tmp_path: Path,
) -> None:
    path = tmp_path / "session.json"
    first = make_manager(credentials=creds, store=FileTokenStore(path))
    first.access_token()
    # A second process (or the next run of a CLI) starts from the file, with no credentials.
    second = make_manager(store=FileTokenStore(path))
    stored = FileTokenStore(path).load()
    assert stored is not None and second.tokens is not None
    assert second.tokens.refresh_token == stored.refresh_token
    auth.clock.advance(ACCESS_TTL + 1)
    first.access_token()  # rotates and writes the file
    auth.clock.advance(11)  # past the grace window: a retired token now kills the session
    second.access_token()  # re-reads the file instead of sending the retired token
    assert auth.rpc_counts["Refresh"] == 1
    assert auth.rpc_counts["Login"] == 1
    auth.clock.advance(ACCESS_TTL + 1)
    second.access_token()  # the session is alive: no reuse was detected
    first.access_token()
    assert auth.rpc_counts["Refresh"] == 2
    assert auth.rpc_counts["Login"] == 1
