"""authsvc on a real Sentinel group (1 master, 2 replicas, 3 sentinels, quorum 2): the API
on two instances with revocations seen at once, and the master killed right after each
revocation under load."""

from __future__ import annotations

import grpc
import pytest
from authsvc_api.v1 import auth_pb2

from tests.failover import PASSWORD, ROUNDS, revoke_kill_promote
from tests.harness import Harness, HarnessFactory
from tests.topologies import SentinelDeployment


def pair(factory: HarnessFactory, group: SentinelDeployment) -> list[Harness]:
    a = factory(redis_url=group.url, data_dir=group.data_dir)
    b = factory(shared_with=a)
    for h in (a, b):
        h.run(h.view.wait_until(live=True))
    return [a, b]


def valid(h: Harness, token: str) -> bool:
    return h.stub.Validate(auth_pb2.ValidateRequest(access_token=token), timeout=10).valid


def test_the_api_and_cross_instance_revocation_through_sentinel(
    redis_sentinel: SentinelDeployment, authsvc_server_factory: HarnessFactory
) -> None:
    a, b = pair(authsvc_server_factory, redis_sentinel)
    a.create_user("alice", PASSWORD)
    login = a.login("alice", PASSWORD)
    refreshed = b.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
    assert valid(a, refreshed.access_token) and valid(b, login.access_token)
    scopes = [
        auth_pb2.REVOKE_SCOPE_TOKEN,
        auth_pb2.REVOKE_SCOPE_SESSION,
        auth_pb2.REVOKE_SCOPE_USER,
    ]
    for round_ in range(12):
        login = a.login("alice", PASSWORD)
        assert valid(b, login.access_token)
        token = login.refresh_token if round_ % 2 else login.access_token
        # An access token alone ends only itself; the refresh token ends more.
        a.revoke(token, scopes[(round_ // 2) % 3] if round_ % 2 else scopes[0])
        assert not valid(b, login.access_token), f"round {round_}"
    with pytest.raises(grpc.RpcError) as gone:
        a.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=refreshed.refresh_token))
    assert gone.value.code() is grpc.StatusCode.UNAUTHENTICATED  # USER ended it


@pytest.mark.timeout(120 + 30 * ROUNDS)
def test_a_master_killed_after_each_revocation_loses_none(
    redis_sentinel: SentinelDeployment, authsvc_server_factory: HarnessFactory
) -> None:
    a, b = pair(authsvc_server_factory, redis_sentinel)
    for name in ("victim", "load"):
        a.create_user(name, PASSWORD)
    outcomes = revoke_kill_promote(
        [a, b],
        "victim",
        "load",
        kill=redis_sentinel.kill_master,
        wait_promoted=redis_sentinel.wait_promoted,
        restart=redis_sentinel.restart,
    )
    assert not outcomes.wrong, outcomes.wrong[:5]
    assert outcomes.codes["Validate OK"] and outcomes.codes["Refresh OK"], outcomes.codes
