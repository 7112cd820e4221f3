"""The domain's events, as the audit trail and metrics receive them, through a real server."""

from __future__ import annotations

import grpc
import pytest
from authsvc_api.v1 import auth_pb2

from authsvc import events
from authsvc.accounts import AccountAdmin
from authsvc.caller import LOCAL_OPERATOR
from tests.harness import Harness, HarnessFactory

PASSWORD = "correct horse battery staple"


def of_type(h: Harness, kind: type[events.Event]) -> list[events.Event]:
    return [e for e in h.events.events if isinstance(e, kind)]


def test_logins_name_the_account_tried_and_the_source(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("alice", PASSWORD, scopes=("read",))
    ok = h.login("alice", PASSWORD)
    with pytest.raises(grpc.RpcError):
        h.login("alice", "wrong password")
    with pytest.raises(grpc.RpcError):
        h.login("nobody", "wrong password")
    with pytest.raises(grpc.RpcError):
        h.login("alice", PASSWORD, scopes=["admin"])
    assert of_type(h, events.LoginSucceeded) == [
        events.LoginSucceeded("alice", "127.0.0.1", ok.session_id)
    ]
    assert of_type(h, events.LoginFailed) == [
        events.LoginFailed("alice", "127.0.0.1", events.LoginFailure.BAD_CREDENTIALS),
        events.LoginFailed("nobody", "127.0.0.1", events.LoginFailure.BAD_CREDENTIALS),
        events.LoginFailed("alice", "127.0.0.1", events.LoginFailure.DENIED_SCOPE),
    ]


def test_a_throttled_login_is_an_event(authsvc_server_factory: HarnessFactory) -> None:
    h = authsvc_server_factory(login_max_failures=2)
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            h.login("mallory", "guess")
    throttled = of_type(h, events.LoginThrottled)
    assert len(throttled) == 1
    assert isinstance(throttled[0], events.LoginThrottled)
    assert (throttled[0].account, throttled[0].source) == ("mallory", "127.0.0.1")
    assert throttled[0].retry_after_seconds >= 1


def test_refresh_outcomes_and_reuse_name_subject_and_session(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(refresh_grace_seconds=0)
    h.create_user("alice", PASSWORD)
    login = h.login("alice", PASSWORD)
    h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
    with pytest.raises(grpc.RpcError):
        h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
    outcomes = [(e.account, e.session_id, e.outcome) for e in h.events.events
                if isinstance(e, events.Refreshed)]  # fmt: skip
    sid = login.session_id
    assert outcomes == [
        ("alice", sid, events.RefreshOutcome.ROTATED),
        ("alice", sid, events.RefreshOutcome.REUSE_DETECTED),
    ]


def test_revocations_say_what_ended_and_by_whom(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("alice", PASSWORD)
    first, second = h.login("alice", PASSWORD), h.login("alice", PASSWORD)
    h.revoke(first.access_token, auth_pb2.REVOKE_SCOPE_TOKEN)
    h.revoke(second.refresh_token, auth_pb2.REVOKE_SCOPE_SESSION)
    h.revoke("not a token", auth_pb2.REVOKE_SCOPE_USER)  # RFC 7009: OK, and no event
    assert of_type(h, events.Revoked) == [
        events.Revoked("alice", "127.0.0.1", first.session_id, "token", by="127.0.0.1"),
        events.Revoked("alice", "127.0.0.1", second.session_id, "session", by="127.0.0.1"),
    ]


def test_no_event_carries_a_secret(authsvc_server: Harness) -> None:
    h = authsvc_server
    admin = h.admin_token()
    h.create_user("alice", PASSWORD)
    login = h.login("alice", PASSWORD)
    h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
    with pytest.raises(grpc.RpcError):  # refused: an event, without the token
        h.revoke(login.access_token, auth_pb2.REVOKE_SCOPE_USER)
    h.revoke(login.access_token, auth_pb2.REVOKE_SCOPE_SESSION, bearer=admin)
    text = repr(h.events.events)
    assert h.events.events
    for secret in (PASSWORD, login.access_token, login.refresh_token, admin):
        assert secret not in text


def test_account_changes_name_the_account_and_who_changed_it(authsvc_server: Harness) -> None:
    h = authsvc_server
    sink = events.RecordingSink()
    admin = AccountAdmin(h.store, h.server._hasher, h.clock, sink)
    h.run(admin.add_user("bob", PASSWORD, ["read"]))
    h.login("bob", PASSWORD)
    assert h.run(admin.disable("bob")) == 1
    h.run(admin.enable("bob"))
    by = LOCAL_OPERATOR.source
    assert sink.events == [
        events.AccountChanged("bob", by, "user_created", by),
        events.AccountChanged("bob", by, "disabled", by, sessions_ended=1),
        events.AccountChanged("bob", by, "enabled", by),
    ]
