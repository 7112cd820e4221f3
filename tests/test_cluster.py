"""authsvc on a real Redis Cluster (3 masters, 3 replicas): the whole API on two instances,
revocations seen at once across them, the admin CLI seeing every node's accounts, and a
master killed under load right after each revocation."""

from __future__ import annotations

import subprocess
from typing import Any

import grpc
import pytest
from authsvc_api.v1 import auth_pb2

from authsvc.accounts import AccountAdmin
from authsvc.revocation_channels import user_slot
from tests.failover import PASSWORD, ROUNDS, revoke_kill_promote
from tests.harness import AUTHSVC_BIN, Harness, HarnessFactory, env_without_authsvc_settings
from tests.topologies import ClusterDeployment


def user_key(name: str) -> str:
    return f"{{u:{name}}}"


def names_on_every_master(cluster: ClusterDeployment, prefix: str) -> dict[int, str]:
    """One account name per master port."""
    found: dict[int, str] = {}
    for i in range(200):
        name = f"{prefix}{i}"
        found.setdefault(cluster.master_port_of(user_key(name)), name)
        if len(found) == 3:
            return found
    raise AssertionError("no names for every master")


def pair(factory: HarnessFactory, cluster: ClusterDeployment, **overrides: Any) -> list[Harness]:
    a = factory(redis_url=cluster.url, data_dir=cluster.data_dir, **overrides)
    b = factory(shared_with=a, **overrides)
    for h in (a, b):
        h.run(h.view.wait_until(live=True))
    return [a, b]


def valid(h: Harness, token: str) -> bool:
    return h.stub.Validate(auth_pb2.ValidateRequest(access_token=token), timeout=10).valid


def test_the_whole_api_on_a_cluster_with_two_instances(
    redis_cluster: ClusterDeployment, authsvc_server_factory: HarnessFactory
) -> None:
    a, b = pair(authsvc_server_factory, redis_cluster, login_max_failures=3)
    names = names_on_every_master(redis_cluster, "flow")
    assert len(set(names)) == 3
    for name in names.values():
        a.create_user(name, PASSWORD)
        login = a.login(name, PASSWORD)
        assert valid(b, login.access_token) and valid(a, login.access_token)
        refreshed = b.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
        retried = a.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
        assert retried.refresh_token == refreshed.refresh_token  # the grace window
        a.clock.advance(11)
        with pytest.raises(grpc.RpcError) as reuse:  # reuse ends the session everywhere
            a.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=login.refresh_token))
        assert reuse.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert not valid(b, refreshed.access_token)
    assert b.stub.GetJwks(auth_pb2.GetJwksRequest()).jwks_json
    # Login throttle: counted in the user's slot, whichever instance is asked.
    name = names[min(names)]
    for h in (a, b, a):
        with pytest.raises(grpc.RpcError):
            h.login(name, "wrong")
    with pytest.raises(grpc.RpcError) as throttled:
        b.login(name, PASSWORD)
    assert throttled.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_revocations_reach_the_other_instance_at_once(
    redis_cluster: ClusterDeployment, authsvc_server_factory: HarnessFactory
) -> None:
    a, b = pair(authsvc_server_factory, redis_cluster)
    names = list(names_on_every_master(redis_cluster, "cross").values())
    for name in names:
        a.create_user(name, PASSWORD)
    scopes = [
        auth_pb2.REVOKE_SCOPE_TOKEN,
        auth_pb2.REVOKE_SCOPE_SESSION,
        auth_pb2.REVOKE_SCOPE_USER,
    ]
    for round_ in range(30):
        login = a.login(names[round_ % 3], PASSWORD)
        assert valid(b, login.access_token)  # b now holds it in its view
        token = login.refresh_token if round_ % 2 else login.access_token
        # An access token alone ends only itself; the refresh token ends more.
        a.revoke(token, scopes[(round_ // 3) % 3] if round_ % 2 else scopes[0])
        assert not valid(b, login.access_token), f"round {round_}"
    # Admin changes take power away on every instance too.
    admin = AccountAdmin(a.store, a.server._hasher, a.clock)
    for name in names:
        login = a.login(name, PASSWORD)
        assert valid(b, login.access_token)
        a.run(admin.disable(name))
        assert not valid(b, login.access_token)
        a.run(admin.enable(name))
        a.run(admin.set_scopes(name, ["read"]))
        with pytest.raises(grpc.RpcError) as denied:
            b.login(name, PASSWORD, scopes=["write"])
        assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED


def test_user_list_sees_the_accounts_of_every_node(redis_cluster: ClusterDeployment) -> None:
    names = names_on_every_master(redis_cluster, "listed")
    env = env_without_authsvc_settings(
        AUTHSVC_REDIS_URL=redis_cluster.url, AUTHSVC_DATA_DIR=str(redis_cluster.data_dir)
    )
    for name in names.values():
        subprocess.run(
            [AUTHSVC_BIN, "user", "add", name, "--password-stdin"],
            env=env, input=f"{PASSWORD}\n{PASSWORD}\n", text=True, check=True,
            capture_output=True, timeout=60,
        )  # fmt: skip
    listed = subprocess.run(
        [AUTHSVC_BIN, "user", "list"], env=env, text=True, check=True, capture_output=True,
        timeout=60,
    ).stdout  # fmt: skip
    assert {line.split("\t")[0] for line in listed.splitlines()} >= set(names.values())
    assert len({user_slot(n) for n in names.values()}) == 3


@pytest.mark.timeout(120 + 30 * ROUNDS)
def test_a_master_killed_after_each_revocation_loses_none(
    redis_cluster: ClusterDeployment, authsvc_server_factory: HarnessFactory
) -> None:
    a, b = pair(authsvc_server_factory, redis_cluster)
    user, load_user = "failover-victim", "failover-load"
    for name in (user, load_user):
        a.create_user(name, PASSWORD)
    key = user_key(user)
    outcomes = revoke_kill_promote(
        [a, b],
        user,
        load_user,
        kill=lambda: redis_cluster.kill_master_of(key),
        wait_promoted=lambda victim: redis_cluster.wait_promoted(key, victim),
        restart=redis_cluster.restart,
    )
    assert not outcomes.wrong, outcomes.wrong[:5]
    assert outcomes.codes["Validate OK"] and outcomes.codes["Refresh OK"], outcomes.codes
