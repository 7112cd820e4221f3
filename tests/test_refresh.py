"""Refresh: rotation, grace retry, reuse detection, concurrency, expiry, scope narrowing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from authsvc_api.v1 import auth_pb2

from authsvc import events
from tests.harness import Harness, HarnessFactory

PASSWORD = "correct horse battery staple"


def refresh(h: Harness, token: str, scopes: tuple[str, ...] = ()) -> auth_pb2.RefreshResponse:
    return h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=token, scopes=scopes), timeout=10)


def refresh_code(h: Harness, token: str) -> grpc.StatusCode:
    try:
        refresh(h, token)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def valid(h: Harness, access_token: str) -> bool:
    answer = h.stub.Validate(auth_pb2.ValidateRequest(access_token=access_token), timeout=10)
    return answer.valid


@pytest.fixture
def alice(authsvc_server: Harness) -> auth_pb2.LoginResponse:
    authsvc_server.create_user("alice", PASSWORD)
    return authsvc_server.login("alice", PASSWORD)


def test_refresh_rotates_and_keeps_the_old_access_token_valid(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse
) -> None:
    h = authsvc_server
    h.clock.advance(60)
    new = refresh(h, alice.refresh_token)
    assert new.refresh_token != alice.refresh_token
    assert new.access_token != alice.access_token
    assert new.session_id == alice.session_id and new.token_type == "Bearer"
    assert new.expires_in == 900 and new.refresh_expires_in == 14 * 24 * 3600
    assert valid(h, new.access_token)
    assert valid(h, alice.access_token)  # calls in flight keep working
    assert refresh(h, new.refresh_token).refresh_token  # the successor works


def test_retry_within_grace_returns_exactly_the_same_pair(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse
) -> None:
    h = authsvc_server
    first = refresh(h, alice.refresh_token)
    h.clock.advance(9)
    retry = refresh(h, alice.refresh_token)
    assert (retry.access_token, retry.refresh_token) == (first.access_token, first.refresh_token)
    assert retry.expires_in == first.expires_in - 9
    assert valid(h, first.access_token)
    assert refresh(h, first.refresh_token).refresh_token  # session still healthy


def test_reuse_after_grace_revokes_the_whole_session(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse
) -> None:
    h = authsvc_server
    first = refresh(h, alice.refresh_token)
    h.clock.advance(11)
    assert refresh_code(h, alice.refresh_token) == grpc.StatusCode.UNAUTHENTICATED
    # The family is gone: successor refresh token and every access token of the session.
    assert refresh_code(h, first.refresh_token) == grpc.StatusCode.UNAUTHENTICATED
    assert not valid(h, first.access_token)
    assert not valid(h, alice.access_token)


def test_reuse_of_an_older_generation_is_detected(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse
) -> None:
    h = authsvc_server
    second = refresh(h, alice.refresh_token)
    h.clock.advance(1)
    third = refresh(h, second.refresh_token)
    assert refresh_code(h, alice.refresh_token) == grpc.StatusCode.UNAUTHENTICATED
    assert not valid(h, third.access_token)


def test_grace_zero_turns_the_retry_window_off(authsvc_server_factory: HarnessFactory) -> None:
    h = authsvc_server_factory(refresh_grace_seconds=0)
    h.create_user("alice", PASSWORD)
    login = h.login("alice", PASSWORD)
    first = refresh(h, login.refresh_token)
    assert refresh_code(h, login.refresh_token) == grpc.StatusCode.UNAUTHENTICATED
    assert not valid(h, first.access_token)


def test_sixteen_concurrent_refreshes_yield_one_successor(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse
) -> None:
    h = authsvc_server
    barrier = threading.Barrier(16)

    def go(_: int) -> tuple[str, str] | grpc.StatusCode:
        barrier.wait()
        try:
            r = refresh(h, alice.refresh_token)
        except grpc.RpcError as exc:
            return exc.code()
        return (r.access_token, r.refresh_token)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(go, range(16)))
    pairs = {r for r in results if isinstance(r, tuple)}
    assert len(pairs) == 1, "every caller within the grace window gets the one successor"
    assert len(results) == 16 and all(isinstance(r, tuple) for r in results)
    ((_, successor),) = pairs
    assert refresh(h, successor).refresh_token


def test_concurrent_refreshes_without_grace_never_make_two_successors(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(refresh_grace_seconds=0)
    h.create_user("alice", PASSWORD)
    login = h.login("alice", PASSWORD)
    barrier = threading.Barrier(16)

    def go(_: int) -> str | None:
        barrier.wait()
        try:
            return refresh(h, login.refresh_token).refresh_token
        except grpc.RpcError:
            return None

    with ThreadPoolExecutor(max_workers=16) as pool:
        successors = {s for s in pool.map(go, range(16)) if s}
    assert len(successors) <= 1
    # Sixteen presentations of one token without a grace window is reuse: the session ends.
    for successor in successors:
        assert refresh_code(h, successor) == grpc.StatusCode.UNAUTHENTICATED


@pytest.mark.parametrize(
    "token",
    ["nonsense", "rt1.YWxpY2U.sid.short", "rt1.YWxpY2U.sid." + "A" * 43, "rt1.!!!.x." + "A" * 43],
)
def test_unknown_refresh_tokens_are_unauthenticated(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse, token: str
) -> None:
    assert refresh_code(authsvc_server, token) == grpc.StatusCode.UNAUTHENTICATED
    assert refresh(authsvc_server, alice.refresh_token).refresh_token  # no side effect


def test_forged_secret_for_a_real_session_does_not_end_it(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse
) -> None:
    forged = alice.refresh_token.rsplit(".", 1)[0] + "." + "B" * 43
    assert refresh_code(authsvc_server, forged) == grpc.StatusCode.UNAUTHENTICATED
    assert valid(authsvc_server, alice.access_token)
    assert refresh(authsvc_server, alice.refresh_token).refresh_token


def test_access_token_is_not_a_refresh_token(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse
) -> None:
    assert refresh_code(authsvc_server, alice.access_token) == grpc.StatusCode.UNAUTHENTICATED


def test_empty_or_oversized_refresh_token_is_invalid_argument(authsvc_server: Harness) -> None:
    for token in ("", "x" * 9000):
        assert refresh_code(authsvc_server, token) == grpc.StatusCode.INVALID_ARGUMENT


def test_expired_refresh_token_is_unauthenticated(authsvc_server_factory: HarnessFactory) -> None:
    h = authsvc_server_factory(refresh_ttl_seconds=3600)
    h.create_user("alice", PASSWORD)
    login = h.login("alice", PASSWORD)
    h.clock.advance(3601)
    assert refresh_code(h, login.refresh_token) == grpc.StatusCode.UNAUTHENTICATED


def test_refresh_slides_but_never_past_the_absolute_session_cap(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(refresh_ttl_seconds=3600, session_max_seconds=5000)
    h.create_user("alice", PASSWORD)
    token = h.login("alice", PASSWORD).refresh_token
    h.clock.advance(3000)
    r = refresh(h, token)
    assert r.refresh_expires_in == 2000  # capped by the absolute lifetime, not 3600
    h.clock.advance(2000)
    assert refresh_code(h, r.refresh_token) == grpc.StatusCode.UNAUTHENTICATED


def test_refresh_may_narrow_scopes_never_widen(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse
) -> None:
    h = authsvc_server
    narrow = refresh(h, alice.refresh_token, scopes=("read",))
    assert list(narrow.scopes) == ["read"]
    # The session keeps its grant: a later refresh may ask for the original scopes again.
    h.clock.advance(11)
    full = refresh(h, narrow.refresh_token)
    assert sorted(full.scopes) == ["read", "write"]
    with pytest.raises(grpc.RpcError) as excinfo:
        refresh(h, full.refresh_token, scopes=("admin",))
    assert excinfo.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_disabled_user_cannot_refresh(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse
) -> None:
    h = authsvc_server
    assert h.run(h.store.disable_account("alice")) == 1
    assert refresh_code(h, alice.refresh_token) == grpc.StatusCode.UNAUTHENTICATED
    assert not valid(h, alice.access_token)


def test_password_change_ends_all_sessions(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("alice", PASSWORD)
    a, b = h.login("alice", PASSWORD), h.login("alice", PASSWORD)
    new_hash = h.server._hasher.hash("a new password")
    assert h.run(h.store.change_password("alice", new_hash)) == 2
    for login in (a, b):
        assert refresh_code(h, login.refresh_token) == grpc.StatusCode.UNAUTHENTICATED
        assert not valid(h, login.access_token)
    assert h.login("alice", "a new password").access_token


def test_a_remembered_grant_is_checked_against_the_stored_one(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse
) -> None:
    h = authsvc_server
    # The instance remembers the session's grant from the login; change the stored one
    # behind its back: the rotation script refuses the stale grant and Refresh re-reads it.
    key = f"authsvc:{{u:alice}}:s:{alice.session_id}"
    h.run(h.store._r.hset(key, "scope", "read"))
    new = refresh(h, alice.refresh_token)
    assert list(new.scopes) == ["read"]
    claims = h.stub.Validate(auth_pb2.ValidateRequest(access_token=new.access_token)).claims
    assert list(claims.scopes) == ["read"]


def test_the_session_index_outlives_every_session_it_lists(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse
) -> None:
    h = authsvc_server
    r = h.store._r
    # Redis TTLs run on real time: make the index as close to expiry as it would be after
    # 14 days of refreshing, then refresh again.
    h.run(r.pexpire("authsvc:{u:alice}:sessions", 5000))
    token = refresh(h, alice.refresh_token).refresh_token
    index_ttl = h.run(r.pttl("authsvc:{u:alice}:sessions"))
    session_ttl = h.run(r.pttl(f"authsvc:{{u:alice}}:s:{alice.session_id}"))
    assert index_ttl >= session_ttl > 0
    h.revoke(token, auth_pb2.REVOKE_SCOPE_USER)  # so "log out everywhere" still finds it
    assert refresh_code(h, token) == grpc.StatusCode.UNAUTHENTICATED


def test_a_made_up_secret_does_not_end_an_expired_session_early(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(refresh_ttl_seconds=3600)
    h.create_user("alice", PASSWORD)
    login = h.login("alice", PASSWORD)
    h.clock.advance(3601)  # refresh token expired; the last access token may still be live
    forged = login.refresh_token.rsplit(".", 1)[0] + "." + "D" * 43
    assert refresh_code(h, forged) == grpc.StatusCode.UNAUTHENTICATED
    assert h.run(h.store._r.exists(f"authsvc:{{u:alice}}:s:{login.session_id}")) == 1


def test_wider_scopes_with_an_unusable_token_is_unauthenticated(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse
) -> None:
    h = authsvc_server
    refresh(h, alice.refresh_token)
    with pytest.raises(grpc.RpcError) as excinfo:
        refresh(h, alice.refresh_token.rsplit(".", 1)[0] + "." + "E" * 43, scopes=("admin",))
    assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED


# -- privileges taken away reach live sessions ------------------------------------------


def scopes_of(h: Harness, access_token: str) -> list[str]:
    answer = h.stub.Validate(auth_pb2.ValidateRequest(access_token=access_token), timeout=10)
    assert answer.valid
    return sorted(answer.claims.scopes)


def test_refresh_grants_only_the_scopes_the_account_still_has(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("alice", PASSWORD, scopes=("read", "write", "admin"))
    login = h.login("alice", PASSWORD)
    h.run(h.store.set_scopes("alice", ["read"]))
    first = refresh(h, login.refresh_token)
    assert list(first.scopes) == ["read"] and scopes_of(h, first.access_token) == ["read"]
    with pytest.raises(grpc.RpcError) as excinfo:  # no narrowing into what was taken away
        refresh(h, first.refresh_token, scopes=("write",))
    assert excinfo.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Given back, a scope the session was granted comes back; one it never had does not.
    h.run(h.store.set_scopes("alice", ["read", "write", "deploy"]))
    second = refresh(h, first.refresh_token)
    assert sorted(second.scopes) == ["read", "write"]
    h.run(h.store.set_scopes("alice", []))
    assert list(refresh(h, second.refresh_token).scopes) == []


def command_calls(h: Harness, *names: str) -> int:
    stats: dict[str, Any] = h.run(h.store._r.info("commandstats"))
    return sum(int(stats.get(f"cmdstat_{n}", {}).get("calls", 0)) for n in names)


def test_a_steady_state_refresh_is_one_script_call(
    authsvc_server: Harness, alice: auth_pb2.LoginResponse
) -> None:
    h = authsvc_server
    token = refresh(h, alice.refresh_token).refresh_token  # grant remembered from the login
    reads, scripts = command_calls(h, "exec"), command_calls(h, "evalsha")
    token = refresh(h, token).refresh_token
    # One EVALSHA reads the session and the account and rotates; no separate read.
    assert command_calls(h, "exec") == reads
    assert command_calls(h, "evalsha") == scripts + 1
    h.run(h.store.set_scopes("alice", ["read"]))
    scripts = command_calls(h, "evalsha")
    assert list(refresh(h, token).scopes) == ["read"]
    assert command_calls(h, "exec") == reads + 1  # a change costs one read, once
    assert command_calls(h, "evalsha") == scripts + 2  # refused (REGRANT), then rotated


def test_refresh_ends_a_session_whose_audience_the_account_lost(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(audiences=("billing",))
    h.create_user("alice", PASSWORD)
    billing = h.login("alice", PASSWORD, audience="billing")
    own = h.login("alice", PASSWORD)
    h.run(h.store.set_audiences("alice", ["authsvc"]))
    assert refresh_code(h, billing.refresh_token) == grpc.StatusCode.UNAUTHENTICATED
    assert not valid(h, billing.access_token)  # the session is gone, its tokens with it
    assert refresh(h, own.refresh_token).refresh_token  # the allowed audience still works
    outcome = [e.outcome for e in h.events.events if isinstance(e, events.Refreshed)]
    assert outcome == [events.RefreshOutcome.REFUSED, events.RefreshOutcome.ROTATED]
