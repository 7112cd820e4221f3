"""The local revocation view: Validate without a Redis read in the steady state, instant
rejection across instances, and a safe fallback when the event feed is lost."""

from __future__ import annotations

from typing import Any

from authsvc_api.v1 import auth_pb2

from authsvc.revocation_view import RevocationView
from tests.harness import Harness, HarnessFactory

PASSWORD = "correct horse battery staple"


def hmget_calls(h: Harness) -> int:
    stats: dict[str, Any] = h.run(h.store._r.info("commandstats"))
    return int(stats.get("cmdstat_hmget", {}).get("calls", 0))


def valid(h: Harness, token: str) -> bool:
    return h.stub.Validate(auth_pb2.ValidateRequest(access_token=token), timeout=10).valid


def pair(authsvc_server_factory: HarnessFactory) -> tuple[Harness, Harness]:
    a = authsvc_server_factory()
    b = authsvc_server_factory(shared_with=a)
    for h in (a, b):
        h.run(h.view.wait_until(live=True))
    a.create_user("alice", PASSWORD)
    return a, b


def test_steady_state_validate_reads_redis_once_per_token(
    authsvc_server_factory: HarnessFactory,
) -> None:
    a, _ = pair(authsvc_server_factory)
    token = a.login("alice", PASSWORD).access_token
    before = hmget_calls(a)
    assert all(valid(a, token) for _ in range(50))
    assert hmget_calls(a) - before == 1


def test_every_kind_of_revocation_reaches_the_other_instance_at_once(
    authsvc_server_factory: HarnessFactory,
) -> None:
    a, b = pair(authsvc_server_factory)
    scopes = [
        auth_pb2.REVOKE_SCOPE_TOKEN,
        auth_pb2.REVOKE_SCOPE_SESSION,
        auth_pb2.REVOKE_SCOPE_USER,
    ]
    admin = a.admin_token()
    for round_ in range(30):
        login = a.login("alice", PASSWORD)
        assert valid(b, login.access_token)  # b now holds it in its view
        # Access and refresh tokens, with every scope (a refresh token with TOKEN scope
        # ends its session; an access token ends more only for an administrator).
        token = login.refresh_token if round_ % 2 else login.access_token
        a.revoke(token, scopes[round_ % 3], bearer=admin)
        assert not valid(b, login.access_token), f"round {round_}"


def test_reuse_detection_and_admin_changes_reach_the_view(
    authsvc_server_factory: HarnessFactory,
) -> None:
    a, b = pair(authsvc_server_factory)
    login = a.login("alice", PASSWORD)
    assert valid(b, login.access_token)
    a.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
    a.clock.advance(11)
    try:
        a.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
    except Exception:  # noqa: BLE001, S110 - UNAUTHENTICATED: reuse ends the session
        pass
    assert not valid(b, login.access_token)
    second = a.login("alice", PASSWORD)
    assert valid(b, second.access_token)
    a.run(a.store.disable_account("alice"))
    assert not valid(b, second.access_token)


def test_lost_feed_falls_back_to_redis_and_recovers(authsvc_server_factory: HarnessFactory) -> None:
    a, b = pair(authsvc_server_factory)
    login = a.login("alice", PASSWORD)
    assert valid(b, login.access_token)
    a.run(a.store._r.client_kill_filter(_type="pubsub"))  # both feeds cut
    b.run(b.view.wait_until(live=False))
    before = hmget_calls(b)
    assert valid(b, login.access_token)
    assert hmget_calls(b) - before == 1  # answered from Redis, not from the emptied view
    b.run(b.view.wait_until(live=True))
    a.run(a.view.wait_until(live=True))
    a.revoke(login.access_token, auth_pb2.REVOKE_SCOPE_TOKEN)
    assert not valid(b, login.access_token)


def test_view_can_be_turned_off(authsvc_server_factory: HarnessFactory) -> None:
    h = authsvc_server_factory(revocation_view=False)
    h.create_user("alice", PASSWORD)
    token = h.login("alice", PASSWORD).access_token
    before = hmget_calls(h)
    assert all(valid(h, token) for _ in range(5))
    assert hmget_calls(h) - before == 5


def test_a_full_view_drops_its_least_recently_used_token_and_events_still_apply(
    authsvc_server: Harness,
) -> None:
    # A long interval: no PING (and no PONG waiting on the socket) during the checks.
    view = RevocationView(authsvc_server.redis.url, interval=30.0, max_entries=3)

    async def scenario() -> None:
        view.start()
        try:
            await view.wait_until(live=True)
            for jti in ("t1", "t2", "t3"):
                view.remember("alice", "s1", jti, view.generation)
            assert view.is_alive("alice", "s1", "t1")  # a use: t2 is now the oldest
            view.remember("bob", "s2", "t4", view.generation)
            assert view.size == 3
            assert not view.is_alive("alice", "s1", "t2")
            assert all(view.is_alive(*e) for e in (("alice", "s1", "t1"), ("bob", "s2", "t4")))
            view.remember("alice", "s1", "t2", view.generation)  # back, t3 the oldest goes
            assert not view.is_alive("alice", "s1", "t3") and view.size == 3
            view.apply("u|alice")
            assert view.size == 1 and not view.is_alive("alice", "s1", "t1")
            view.apply("t|bob|s2|t4")
            assert view.size == 0 and not view.is_alive("bob", "s2", "t4")
        finally:
            await view.stop()

    authsvc_server.run(scenario())
