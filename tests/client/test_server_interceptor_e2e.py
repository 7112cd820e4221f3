"""The server interceptors (blocking and asyncio) accepting and refusing real authsvc tokens."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
from authsvc_api.v1 import auth_pb2
from authsvc_client import Credentials

from tests.client.conftest import ACCESS_TTL
from tests.client.target import Target, stubs
from tests.harness import Harness, HarnessFactory

SERVERS = pytest.mark.parametrize("aio", [False, True], ids=["grpc-server", "aio-server"])


@pytest.fixture
def plain(make_target: Callable[..., Target]) -> Iterator[Callable[[Target], dict[str, Any]]]:
    """Stubs on a channel without the client interceptor, to send any token we like."""
    channels: list[grpc.Channel] = []

    def open_stubs(target: Target) -> dict[str, Any]:
        channel = grpc.insecure_channel(target.address)
        channels.append(channel)
        return stubs(channel)

    yield open_stubs
    for channel in channels:
        channel.close()


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def login(auth: Harness, creds: Credentials, **kwargs: object) -> auth_pb2.LoginResponse:
    return auth.login(creds.principal, creds.secret, **kwargs)


@SERVERS
def test_accepts_a_valid_token_and_hands_over_the_claims(
    auth: Harness, make_target: Callable[..., Target], plain: Callable[..., dict[str, Any]],
    creds: Credentials, aio: bool,
) -> None:  # fmt: skip
    s = plain(make_target(aio=aio))
    token = login(auth, creds).access_token
    assert s["unary"](b"hi", metadata=bearer(token), timeout=10) == b"hi|svc-caller"
    # The claims of one call do not leak into a later public call.
    assert s["public"](b"", timeout=10) == b"public|none"


@SERVERS
@pytest.mark.parametrize(
    "metadata",
    [
        (),
        (("authorization", "Bearer"),),
        (("authorization", "Basic dXNlcjpwYXNz"),),
        (("authorization", "Bearer not.a.jwt"),),
        (("authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."),),  # alg none
    ],
    ids=["missing", "empty", "basic", "garbage", "alg-none"],
)
def test_refuses_missing_or_malformed_tokens(
    make_target: Callable[..., Target], plain: Callable[..., dict[str, Any]],
    aio: bool, metadata: tuple[tuple[str, str], ...],
) -> None:  # fmt: skip
    s = plain(make_target(aio=aio))
    unary = s["unary"]
    assert code_of(lambda: unary(b"", metadata=metadata, timeout=10)) == (
        grpc.StatusCode.UNAUTHENTICATED
    )


@SERVERS
def test_refuses_a_token_for_another_audience(
    auth: Harness, make_target: Callable[..., Target], plain: Callable[..., dict[str, Any]],
    creds: Credentials, aio: bool,
) -> None:  # fmt: skip
    s = plain(make_target(aio=aio, audience="inventory"))
    token = login(auth, creds).access_token  # for the default audience
    unary = s["unary"]
    code = code_of(lambda: unary(b"", metadata=bearer(token), timeout=10))
    assert code == grpc.StatusCode.UNAUTHENTICATED


@SERVERS
def test_missing_scope_is_permission_denied(
    auth: Harness, make_target: Callable[..., Target], plain: Callable[..., dict[str, Any]],
    creds: Credentials, aio: bool,
) -> None:  # fmt: skip
    s = plain(make_target(aio=aio))
    token = login(auth, creds, scopes=["read"]).access_token  # ClientStream needs "write"
    client_stream, unary = s["client_stream"], s["unary"]
    code = code_of(lambda: client_stream(iter([b"a"]), metadata=bearer(token), timeout=10))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert unary(b"ok", metadata=bearer(token), timeout=10) == b"ok|svc-caller"


@SERVERS
def test_refuses_an_expired_token_by_the_injected_clock(
    auth: Harness, make_target: Callable[..., Target], plain: Callable[..., dict[str, Any]],
    creds: Credentials, aio: bool,
) -> None:  # fmt: skip
    s = plain(make_target(aio=aio))
    token = login(auth, creds).access_token
    unary = s["unary"]
    auth.clock.advance(ACCESS_TTL + 4)  # within the 5 s leeway
    assert code_of(lambda: unary(b"", metadata=bearer(token), timeout=10)) == grpc.StatusCode.OK
    auth.clock.advance(2)
    code = code_of(lambda: unary(b"", metadata=bearer(token), timeout=10))
    assert code == grpc.StatusCode.UNAUTHENTICATED


@SERVERS
def test_revoked_token_is_refused_when_confirming_with_authsvc(
    auth: Harness, make_target: Callable[..., Target], plain: Callable[..., dict[str, Any]],
    creds: Credentials, aio: bool,
) -> None:  # fmt: skip
    confirming = plain(make_target(aio=aio, confirm=True))["unary"]
    local_only = plain(make_target(aio=aio))["unary"]
    token = login(auth, creds).access_token
    assert confirming(b"", metadata=bearer(token), timeout=10) == b"|svc-caller"
    auth.revoke(token)
    code = code_of(lambda: confirming(b"", metadata=bearer(token), timeout=10))
    assert code == grpc.StatusCode.UNAUTHENTICATED
    # Local verification alone cannot see revocations until the token expires (documented).
    assert local_only(b"", metadata=bearer(token), timeout=10) == b"|svc-caller"
    assert auth.rpc_counts["Validate"] == 2


@SERVERS
def test_confirming_while_authsvc_is_down_fails_closed_with_unavailable(
    auth: Harness, make_target: Callable[..., Target], plain: Callable[..., dict[str, Any]],
    creds: Credentials, aio: bool,
) -> None:  # fmt: skip
    unary = plain(make_target(aio=aio, confirm=True))["unary"]
    token = login(auth, creds).access_token
    assert unary(b"", metadata=bearer(token), timeout=10) == b"|svc-caller"
    auth.stop_redis()
    code = code_of(lambda: unary(b"", metadata=bearer(token), timeout=10))
    auth.start_redis()
    assert code == grpc.StatusCode.UNAVAILABLE


@SERVERS
def test_unknown_kid_refetches_the_key_set_at_most_once_per_interval(
    auth: Harness, authsvc_server_factory: HarnessFactory,
    make_target: Callable[..., Target], plain: Callable[..., dict[str, Any]],
    creds: Credentials, aio: bool,
) -> None:  # fmt: skip
    other = authsvc_server_factory()  # another authsvc with keys of its own
    secret = other.create_client("stranger")
    foreign = other.login("stranger", secret).access_token
    unary = plain(make_target(aio=aio, min_key_refetch_interval=30))["unary"]
    token = login(auth, creds).access_token

    def code(t: str) -> grpc.StatusCode:
        return code_of(lambda: unary(b"", metadata=bearer(t), timeout=10))

    assert code(token) == grpc.StatusCode.OK
    assert auth.rpc_counts["GetJwks"] == 1
    assert code(foreign) == grpc.StatusCode.UNAUTHENTICATED
    assert code(foreign) == grpc.StatusCode.UNAUTHENTICATED
    assert auth.rpc_counts["GetJwks"] == 1  # rate-limited: fetched 0 s ago
    auth.clock.advance(31)
    assert code(foreign) == grpc.StatusCode.UNAUTHENTICATED
    assert auth.rpc_counts["GetJwks"] == 2  # an unknown kid may mean new keys: one refetch
    assert code(foreign) == grpc.StatusCode.UNAUTHENTICATED
    assert auth.rpc_counts["GetJwks"] == 2
    assert code(token) == grpc.StatusCode.OK


def test_accepts_es256_tokens(
    authsvc_server_factory: HarnessFactory, plain: Callable[..., dict[str, Any]]
) -> None:
    es = authsvc_server_factory(signing_alg="ES256")
    target = Target(es)
    try:
        secret = es.create_client("es-caller")
        token = es.login("es-caller", secret).access_token
        unary = plain(target)["unary"]
        assert unary(b"", metadata=bearer(token), timeout=10) == b"|es-caller"
    finally:
        target.close()
