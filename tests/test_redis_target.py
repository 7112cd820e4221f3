"""AUTHSVC_REDIS_URL: the three topologies, credentials, and errors that never echo it."""

from __future__ import annotations

import pytest

from authsvc.config import load_settings
from authsvc.errors import ConfigError
from authsvc.redis_target import RedisTarget, Topology, parse_redis_url


@pytest.mark.parametrize(
    "url", ["redis://127.0.0.1:6379/0", "rediss://:pw@cache:6380", "unix:///run/redis.sock"]
)
def test_one_redis_is_passed_to_redis_py_as_is(url: str) -> None:
    target = parse_redis_url(url)
    assert target.topology is Topology.SINGLE and target.url == url and not target.distributed
    assert target.tls == url.startswith("rediss://")


def test_cluster_seed_nodes_and_credentials() -> None:
    target = parse_redis_url("rediss+cluster://app:p%40ss@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    assert target == RedisTarget(
        Topology.CLUSTER,
        nodes=(("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002)),
        tls=True,
        username="app",
        password="p@ss",
    )
    assert "p@ss" not in repr(target)


def test_sentinel_nodes_master_and_options() -> None:
    target = parse_redis_url(
        "rediss+sentinel://:secret@s1:26379,s2/prod-auth?ssl_ca_certs=/etc/ca.pem"
    )
    assert target.topology is Topology.SENTINEL and target.distributed
    assert target.nodes == (("s1", 26379), ("s2", 26379))
    assert (target.master_name, target.password, target.username) == ("prod-auth", "secret", None)
    assert target.ssl_ca_certs == "/etc/ca.pem" and target.tls


@pytest.mark.parametrize(
    "url",
    [
        "http://user:hunter2@redis",
        "redis+sentinel://:hunter2@s1:26379",  # no master name
        "redis+sentinel://:hunter2@s1:26379/a/b",
        "redis+cluster://:hunter2@h1:7000/3",  # a cluster has only db 0
        "redis+cluster://:hunter2@h1:port",
        "redis+cluster://:hunter2@h1:70000",
        "redis+cluster://:hunter2@h1:7000,,h2:7000",
        "redis+cluster://:hunter2@h1:7000?timeout=3",
        "redis+cluster://:hunter2@h1:7000?ssl_ca_certs=/ca.pem",  # TLS option without TLS
        "redis://:hunter2@",
        "unix://:hunter2@",
    ],
)
def test_bad_forms_fail_at_start_naming_the_variable_never_the_url(url: str) -> None:
    with pytest.raises(ConfigError) as excinfo:
        load_settings(env={"AUTHSVC_REDIS_URL": url})
    assert "AUTHSVC_REDIS_URL" in str(excinfo.value)
    assert "hunter2" not in str(excinfo.value)


@pytest.mark.parametrize(("raw", "value"), [("auto", None), ("0", 0), ("2", 2)])
def test_min_replicas_ack(raw: str, value: int | None) -> None:
    assert (
        load_settings(env={"AUTHSVC_REDIS_MIN_REPLICAS_ACK": raw}).redis_min_replicas_ack == value
    )
    assert load_settings(env={}).redis_min_replicas_ack is None


def test_min_replicas_ack_out_of_range_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="AUTHSVC_REDIS_MIN_REPLICAS_ACK"):
        load_settings(env={"AUTHSVC_REDIS_MIN_REPLICAS_ACK": "-1"})
