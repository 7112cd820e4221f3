"""What a Redis failover can lose (README "Deploying"): a Refresh acknowledged just before
the master died, before a replica had it. The promoted replica still has the session as it
was, so the refresh token the client now holds is unknown there. The token manager
recovers by itself: its next Refresh is refused and it logs in again with its
credentials, with no operator action."""

from __future__ import annotations

from collections.abc import Callable

import redis
from authsvc_api.v1 import auth_pb2
from authsvc_client import Credentials, TokenManager

from authsvc.store import session_key
from tests.client.conftest import ACCESS_TTL
from tests.harness import Harness


def test_a_refresh_lost_in_a_failover_ends_in_a_new_login(
    auth: Harness, make_manager: Callable[..., TokenManager], creds: Credentials
) -> None:
    manager = make_manager(credentials=creds)
    manager.access_token()
    tokens = manager.tokens
    assert tokens is not None
    key = session_key(creds.principal, tokens.session_id)
    raw = redis.Redis.from_url(auth.redis.url)
    try:
        replica_copy, ttl_ms = raw.dump(key), raw.pttl(key)  # what a replica holds
        auth.clock.advance(ACCESS_TTL)
        manager.access_token()  # a Refresh, acknowledged by the master...
        assert auth.rpc_counts["Refresh"] == 1
        assert isinstance(replica_copy, bytes) and isinstance(ttl_ms, int)
        raw.restore(key, ttl_ms, replica_copy, replace=True)  # ...which then died
    finally:
        raw.close()
    auth.clock.advance(ACCESS_TTL)
    token = manager.access_token()
    assert auth.rpc_counts["Refresh"] == 2 and auth.rpc_counts["Login"] == 2
    check = auth_pb2.ValidateRequest(access_token=token)
    assert auth.stub.Validate(check, timeout=10).valid
