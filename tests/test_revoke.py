"""Revoke (RFC 7009): token, session and user scope; across instances; races with Refresh."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from authsvc_api.v1 import auth_pb2

from tests.harness import Harness, HarnessFactory

PASSWORD = "correct horse battery staple"
TOKEN, SESSION, USER = (
    auth_pb2.REVOKE_SCOPE_TOKEN,
    auth_pb2.REVOKE_SCOPE_SESSION,
    auth_pb2.REVOKE_SCOPE_USER,
)


def valid(h: Harness, token: str) -> bool:
    return h.stub.Validate(auth_pb2.ValidateRequest(access_token=token), timeout=10).valid


def can_refresh(h: Harness, token: str) -> bool:
    try:
        h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=token), timeout=10)
    except grpc.RpcError as exc:
        assert exc.code() == grpc.StatusCode.UNAUTHENTICATED
        return False
    return True


@pytest.fixture
def h(authsvc_server: Harness) -> Harness:
    authsvc_server.create_user("alice", PASSWORD)
    authsvc_server.create_user("bob", PASSWORD)
    return authsvc_server


def test_revoke_one_access_token_leaves_the_session(h: Harness) -> None:
    login = h.login("alice", PASSWORD)
    refreshed = h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
    h.revoke(login.access_token, TOKEN)
    assert not valid(h, login.access_token)
    assert valid(h, refreshed.access_token)
    assert can_refresh(h, refreshed.refresh_token)


def test_revoke_session_ends_its_refresh_and_access_tokens_only(h: Harness) -> None:
    a, b = h.login("alice", PASSWORD), h.login("alice", PASSWORD)
    h.revoke(a.access_token, SESSION)
    assert not valid(h, a.access_token) and not can_refresh(h, a.refresh_token)
    assert valid(h, b.access_token) and can_refresh(h, b.refresh_token)


def test_revoke_with_a_refresh_token_ends_its_session(h: Harness) -> None:
    login = h.login("alice", PASSWORD)
    h.revoke(login.refresh_token, TOKEN)
    assert not valid(h, login.access_token) and not can_refresh(h, login.refresh_token)


def test_revoke_user_logs_out_everywhere_but_not_other_users(h: Harness) -> None:
    sessions = [h.login("alice", PASSWORD) for _ in range(3)]
    bob = h.login("bob", PASSWORD)
    h.revoke(sessions[0].refresh_token, USER)
    for s in sessions:
        assert not valid(h, s.access_token) and not can_refresh(h, s.refresh_token)
    assert valid(h, bob.access_token) and can_refresh(h, bob.refresh_token)
    again = h.login("alice", PASSWORD)  # a new login after "log out everywhere" works
    h.revoke(again.access_token, USER)
    assert not valid(h, again.access_token)


@pytest.mark.parametrize(
    "token", ["garbage", "a.b.c", "rt1.YWxpY2U.nosuchsession." + "A" * 43, "x" * 8000]
)
def test_unknown_or_invalid_tokens_revoke_ok_and_change_nothing(h: Harness, token: str) -> None:
    login = h.login("alice", PASSWORD)
    for scope in (TOKEN, SESSION, USER):
        h.revoke(token, scope)
    assert valid(h, login.access_token) and can_refresh(h, login.refresh_token)


def test_forged_refresh_token_naming_a_real_session_cannot_revoke_it(h: Harness) -> None:
    login = h.login("alice", PASSWORD)
    forged = login.refresh_token.rsplit(".", 1)[0] + "." + "C" * 43
    h.revoke(forged, USER)
    assert valid(h, login.access_token) and can_refresh(h, login.refresh_token)


def test_expired_access_token_revoke_is_ok(h: Harness) -> None:
    login = h.login("alice", PASSWORD)
    h.clock.advance(2000)
    h.revoke(login.access_token, SESSION)  # RFC 7009: OK, nothing to do


def test_empty_token_is_invalid_argument(h: Harness) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        h.revoke("", TOKEN)
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_revoked_through_one_instance_is_rejected_by_another_at_once(
    authsvc_server_factory: HarnessFactory,
) -> None:
    first = authsvc_server_factory()
    second = authsvc_server_factory(shared_with=first)
    first.create_user("alice", PASSWORD)
    login = first.login("alice", PASSWORD)
    assert valid(second, login.access_token)  # cached as verified on the second instance
    first.revoke(login.access_token, TOKEN)
    assert not valid(second, login.access_token)
    other = second.login("alice", PASSWORD)
    assert valid(first, other.access_token)
    second.revoke(other.refresh_token, SESSION)
    assert not valid(first, other.access_token)


def test_revoke_then_refresh_gives_no_successor(h: Harness) -> None:
    login = h.login("alice", PASSWORD)
    h.revoke(login.access_token, SESSION)
    assert not can_refresh(h, login.refresh_token)


def test_refresh_then_revoke_kills_the_successor(h: Harness) -> None:
    login = h.login("alice", PASSWORD)
    successor = h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
    h.revoke(login.access_token, SESSION)
    assert not valid(h, successor.access_token)
    assert not can_refresh(h, successor.refresh_token)


def _race_once(h: Harness) -> list[auth_pb2.RefreshResponse]:
    """Start a Refresh and a session Revoke at the same instant; return any successor."""
    login = h.login("alice", PASSWORD)
    barrier = threading.Barrier(2)
    successor: list[auth_pb2.RefreshResponse] = []

    def do_refresh() -> None:
        barrier.wait()
        try:
            request = auth_pb2.RefreshRequest(refresh_token=login.refresh_token)
            successor.append(h.stub.Refresh(request))
        except grpc.RpcError:
            pass

    def do_revoke() -> None:
        barrier.wait()
        h.revoke(login.access_token, SESSION)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(do_refresh), pool.submit(do_revoke)]:
            f.result()
    return successor


def test_racing_revoke_and_refresh_never_leave_a_live_successor(h: Harness) -> None:
    for _ in range(20):
        for s in _race_once(h):
            assert not valid(h, s.access_token)
            assert not can_refresh(h, s.refresh_token)


def test_a_revoked_access_token_cannot_end_the_sessions_opened_since(h: Harness) -> None:
    stolen = h.login("alice", PASSWORD)
    h.revoke(stolen.access_token, SESSION)  # e.g. the owner logged out after the theft
    fresh = h.login("alice", PASSWORD)
    for scope in (SESSION, USER):
        h.revoke(stolen.access_token, scope)
    assert valid(h, fresh.access_token) and can_refresh(h, fresh.refresh_token)


def test_a_long_retired_refresh_token_cannot_log_the_user_out_everywhere(h: Harness) -> None:
    login = h.login("alice", PASSWORD)
    other = h.login("alice", PASSWORD)
    second = h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
    h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=second.refresh_token))
    h.revoke(login.refresh_token, USER)  # two generations old
    assert valid(h, other.access_token) and can_refresh(h, other.refresh_token)


def test_a_revoked_token_stays_revoked_through_the_leeway(h: Harness) -> None:
    login = h.login("alice", PASSWORD)
    h.revoke(login.access_token, TOKEN)
    h.clock.advance(900 + 5)  # past exp, within the 10 s leeway
    h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))  # prunes
    assert not valid(h, login.access_token)
