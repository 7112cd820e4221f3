"""Redis going away and coming back: UNAVAILABLE (fail closed), health flips, recovery."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
from authsvc_api.v1 import auth_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.harness import Harness

PASSWORD = "correct horse battery staple"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def wait_for_status(
    h: Harness, statuses: Iterator[health_pb2.HealthCheckResponse], want: int
) -> None:
    for answer in statuses:
        if answer.status == want:
            return
    raise AssertionError(f"health stream ended before reaching {want}")


def code_of(call: object) -> grpc.StatusCode:
    try:
        call()  # type: ignore[operator]
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_outage_gives_unavailable_flips_health_and_recovers(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("alice", PASSWORD)
    login = h.login("alice", PASSWORD)
    health = health_pb2_grpc.HealthStub(h.channel)
    watch = health.Watch(
        health_pb2.HealthCheckRequest(service="authsvc.v1.AuthService"), timeout=30
    )
    wait_for_status(h, watch, SERVING)

    h.stop_redis()
    validate = auth_pb2.ValidateRequest(access_token=login.access_token)
    # The token verifies locally, but without the revocation check it is never valid=true.
    assert code_of(lambda: h.stub.Validate(validate, timeout=10)) == grpc.StatusCode.UNAVAILABLE
    assert code_of(lambda: h.login("alice", PASSWORD)) == grpc.StatusCode.UNAVAILABLE
    refresh = auth_pb2.RefreshRequest(refresh_token=login.refresh_token)
    assert code_of(lambda: h.stub.Refresh(refresh, timeout=10)) == grpc.StatusCode.UNAVAILABLE
    revoke = auth_pb2.RevokeRequest(token=login.access_token)
    assert code_of(lambda: h.stub.Revoke(revoke, timeout=10)) == grpc.StatusCode.UNAVAILABLE
    wait_for_status(h, watch, NOT_SERVING)
    check = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert check.status == NOT_SERVING
    # Public keys need no Redis.
    assert h.stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=10).jwks_json

    h.start_redis()
    wait_for_status(h, watch, SERVING)
    watch.cancel()
    # Data survived (AOF) and every RPC works again on the same server.
    assert h.stub.Validate(validate, timeout=10).valid
    assert h.stub.Refresh(refresh, timeout=10).refresh_token
    assert h.login("alice", PASSWORD).access_token


def test_scripts_survive_a_redis_restart_that_lost_the_script_cache(
    authsvc_server: Harness,
) -> None:
    h = authsvc_server
    h.create_user("alice", PASSWORD)
    login = h.login("alice", PASSWORD)
    h.run(h.store._r.script_flush())  # what a restart does to the script cache: NOSCRIPT next
    refreshed = h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
    assert refreshed.refresh_token
    assert h.login("alice", PASSWORD).access_token


def test_health_follows_redis_with_no_rpc_in_between(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.stop_redis()
    health = health_pb2_grpc.HealthStub(h.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    wait_for_status(h, watch, NOT_SERVING)
    h.start_redis()
    wait_for_status(h, watch, SERVING)
    watch.cancel()
    h.create_user("carol", PASSWORD)
    assert h.login("carol", PASSWORD).access_token
