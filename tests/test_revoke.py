"""Revoke (RFC 7009): token, session and user scope; who may end what; across instances;
races with Refresh."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc

from authsvc import events
from tests.certs import make_pki, mtls_settings
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
    admin = h.admin_token()
    a, b, c = (h.login("alice", PASSWORD) for _ in range(3))
    h.revoke(a.access_token, SESSION, bearer=admin)
    h.revoke(b.refresh_token, SESSION)
    for ended in (a, b):
        assert not valid(h, ended.access_token) and not can_refresh(h, ended.refresh_token)
    assert valid(h, c.access_token) and can_refresh(h, c.refresh_token)


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
    h.revoke(again.access_token, USER, bearer=h.admin_token())
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
    h.revoke(login.access_token, SESSION, bearer=h.admin_token())
    assert not can_refresh(h, login.refresh_token)


def test_refresh_then_revoke_kills_the_successor(h: Harness) -> None:
    admin = h.admin_token()
    login = h.login("alice", PASSWORD)
    successor = h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
    h.revoke(login.access_token, SESSION, bearer=admin)
    assert not valid(h, successor.access_token)
    assert not can_refresh(h, successor.refresh_token)


def _race_once(h: Harness, admin: str) -> list[auth_pb2.RefreshResponse]:
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
        h.revoke(login.access_token, SESSION, bearer=admin)

    with ThreadPoolExecutor(max_workers=2) as pool:
        for f in [pool.submit(do_refresh), pool.submit(do_revoke)]:
            f.result()
    return successor


def test_racing_revoke_and_refresh_never_leave_a_live_successor(h: Harness) -> None:
    admin = h.admin_token()
    for _ in range(20):
        for s in _race_once(h, admin):
            assert not valid(h, s.access_token)
            assert not can_refresh(h, s.refresh_token)


def test_a_revoked_access_token_cannot_end_the_sessions_opened_since(h: Harness) -> None:
    admin = h.admin_token()
    stolen = h.login("alice", PASSWORD)
    h.revoke(stolen.refresh_token, SESSION)  # e.g. the owner logged out after the theft
    fresh = h.login("alice", PASSWORD)
    for scope in (SESSION, USER):
        h.revoke(stolen.access_token, scope)  # OK (RFC 7009): nothing left to end
        h.revoke(stolen.access_token, scope, bearer=admin)  # not even for an administrator
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


# -- who may end what ----------------------------------------------------------------------


def revoke_code(
    h: Harness, token: str, scope: auth_pb2.RevokeScope.ValueType, bearer: str = ""
) -> grpc.StatusCode:
    try:
        h.revoke(token, scope, bearer=bearer)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_an_access_token_alone_revokes_itself_and_nothing_more(h: Harness) -> None:
    victim, other = h.login("alice", PASSWORD), h.login("alice", PASSWORD)
    for scope in (SESSION, USER):
        assert revoke_code(h, victim.access_token, scope) == grpc.StatusCode.PERMISSION_DENIED
        # Sending the token as its own credential makes no difference: it is no admin's.
        assert (
            revoke_code(h, victim.access_token, scope, bearer=victim.access_token)
            == grpc.StatusCode.PERMISSION_DENIED
        )
    assert valid(h, victim.access_token) and can_refresh(h, victim.refresh_token)
    assert valid(h, other.access_token) and can_refresh(h, other.refresh_token)
    h.revoke(victim.access_token, TOKEN)
    assert not valid(h, victim.access_token)
    assert can_refresh(h, victim.refresh_token) and valid(h, other.access_token)


def test_refused_privileged_revokes_are_events(h: Harness) -> None:
    login = h.login("alice", PASSWORD)
    assert revoke_code(h, login.access_token, USER) == grpc.StatusCode.PERMISSION_DENIED
    refused = [e for e in h.events.events if isinstance(e, events.RevokeRefused)]
    assert refused == [
        events.RevokeRefused(
            "alice", "127.0.0.1", login.session_id, "user",
            events.RevokeRefusal.NOT_ADMINISTRATOR,
        )
    ]  # fmt: skip
    assert not [e for e in h.events.events if isinstance(e, events.Revoked)]


def test_an_administrator_token_ends_other_peoples_sessions(h: Harness) -> None:
    admin = h.admin_token()
    a, b = h.login("alice", PASSWORD), h.login("alice", PASSWORD)
    bob = h.login("bob", PASSWORD)
    h.revoke(a.access_token, SESSION, bearer=admin)
    assert not valid(h, a.access_token) and valid(h, b.access_token)
    h.revoke(b.access_token, USER, bearer=admin)
    assert not valid(h, b.access_token) and not can_refresh(h, b.refresh_token)
    assert valid(h, bob.access_token) and valid(h, admin)
    by = {(e.what, e.by) for e in h.events.events if isinstance(e, events.Revoked)}
    assert by == {("session", "token:root"), ("user", "token:root")}


def test_an_unusable_admin_token_is_unauthenticated(h: Harness) -> None:
    admin = h.admin_token()
    login = h.login("alice", PASSWORD)
    h.revoke(admin, TOKEN)
    for bearer in (admin, "not-a-token"):
        assert revoke_code(h, login.access_token, USER, bearer) == grpc.StatusCode.UNAUTHENTICATED
    assert valid(h, login.access_token)


def test_taking_the_admin_scope_away_takes_the_power_to_revoke_at_once(h: Harness) -> None:
    admin = h.admin_token()
    login = h.login("alice", PASSWORD)
    h.run(h.store.set_scopes("root", ["read"]))
    assert revoke_code(h, login.access_token, USER, admin) == grpc.StatusCode.PERMISSION_DENIED
    assert valid(h, login.access_token)


def test_an_allow_listed_client_certificate_ends_sessions(
    authsvc_server_factory: HarnessFactory, tmp_path: Path
) -> None:
    ca, server, client = make_pki(tmp_path)
    h = authsvc_server_factory(
        **mtls_settings(ca, server),
        admin_identities=("orders-svc",),
    )
    h.create_user("alice", PASSWORD)
    credentials = grpc.ssl_channel_credentials(
        ca.cert.read_bytes(), client.key.read_bytes(), client.cert.read_bytes()
    )
    with grpc.secure_channel(h.target, credentials) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        login = stub.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD))
        stub.Revoke(auth_pb2.RevokeRequest(token=login.access_token, scope=USER), timeout=10)
        answer = stub.Validate(auth_pb2.ValidateRequest(access_token=login.access_token))
    assert answer.reason == auth_pb2.INVALID_REASON_REVOKED
    assert [e.by for e in h.events.events if isinstance(e, events.Revoked)] == ["mtls:orders-svc"]


def test_a_rotated_refresh_token_keeps_its_power_only_inside_the_grace_window(
    h: Harness,
) -> None:
    a = h.login("alice", PASSWORD)
    a2 = h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=a.refresh_token))
    h.clock.advance(5)  # inside the grace window: a lost answer's retry still holds power
    h.revoke(a.refresh_token, SESSION)
    assert not valid(h, a2.access_token) and not can_refresh(h, a2.refresh_token)

    b, other = h.login("alice", PASSWORD), h.login("alice", PASSWORD)
    h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=b.refresh_token))
    h.clock.advance(11)  # past the window: the retired token has no power left
    for scope in (TOKEN, SESSION, USER):
        h.revoke(b.refresh_token, scope)  # OK (RFC 7009) ...
    assert valid(h, b.access_token)  # ... and nothing ended
    assert valid(h, other.access_token) and can_refresh(h, other.refresh_token)
    refused = [e for e in h.events.events if isinstance(e, events.RevokeRefused)]
    assert [(e.what, e.reason) for e in refused] == [
        ("session", events.RevokeRefusal.STALE_REFRESH_TOKEN),
        ("session", events.RevokeRefusal.STALE_REFRESH_TOKEN),
        ("user", events.RevokeRefusal.STALE_REFRESH_TOKEN),
    ]


def test_an_expired_refresh_token_cannot_log_the_user_out_everywhere(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(refresh_ttl_seconds=3600)
    h.create_user("alice", PASSWORD)
    old = h.login("alice", PASSWORD)
    h.clock.advance(3000)
    fresh = h.login("alice", PASSWORD)
    h.clock.advance(601)  # `old`'s refresh token has expired; `fresh` has not
    h.revoke(old.refresh_token, USER)
    assert valid(h, fresh.access_token) and can_refresh(h, fresh.refresh_token)
