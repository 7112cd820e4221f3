"""Prometheus metrics, scraped from `/metrics` with a real HTTP client after real calls."""

from __future__ import annotations

import asyncio
import secrets
import signal
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from authsvc import events
from authsvc.metrics import Metrics
from authsvc.passwords import PasswordHasher
from authsvc.redis_process import RedisProcess, free_port
from tests.harness import (
    AUTHSVC_BIN,
    Harness,
    HarnessFactory,
    env_without_authsvc_settings,
)

PASSWORD = "correct horse battery staple"
AUTH = "authsvc.v1.AuthService"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of `/metrics`, by (name, sorted labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
        assert reply.status == 200
        assert reply.headers["Content-Type"].startswith("text/plain")
        text = reply.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    assert key in samples, f"no sample {name}{labels}"
    return samples[key]


def wait_for(port: int, ready: Callable[[Samples], bool], timeout: float = 30) -> Samples:
    """Scrape until `ready` holds (what a server does after answering is not synchronous
    with the answer, e.g. a cancelled stream's end)."""
    deadline = time.monotonic() + timeout
    while True:
        samples = scrape(port)
        if ready(samples):
            return samples
        if time.monotonic() > deadline:
            raise TimeoutError("metrics never reached the expected values")
        time.sleep(0.05)


def handled(samples: Samples, method: str, code: str, service: str = AUTH) -> float:
    return value(
        samples,
        "grpc_server_handled_total",
        grpc_type="unary",
        grpc_service=service,
        grpc_method=method,
        grpc_code=code,
    )


def expect(code: grpc.StatusCode, call: Callable[[], Any]) -> None:
    with pytest.raises(grpc.RpcError) as err:
        call()
    assert err.value.code() == code


def test_a_scripted_flow_is_counted_exactly(authsvc_server_factory: HarnessFactory) -> None:
    # A long health interval: no PING on the revocation feed can make a view hit a miss.
    h = authsvc_server_factory(
        metrics_listen="127.0.0.1:0", login_max_failures=2, health_interval_seconds=30
    )
    h.run(h.view.wait_until(True))
    h.create_user("alice", PASSWORD, scopes=("read",))
    stub = h.stub

    def refresh(token: str) -> auth_pb2.RefreshResponse:
        return stub.Refresh(auth_pb2.RefreshRequest(refresh_token=token), timeout=10)

    def validate(token: str, *scopes: str) -> auth_pb2.ValidateResponse:
        request = auth_pb2.ValidateRequest(access_token=token, required_scopes=scopes)
        return stub.Validate(request, timeout=10)

    first = h.login("alice", PASSWORD)
    for _ in range(2):
        expect(grpc.StatusCode.UNAUTHENTICATED, lambda: h.login("mallory", "guess"))
    expect(grpc.StatusCode.RESOURCE_EXHAUSTED, lambda: h.login("mallory", "guess"))
    expect(grpc.StatusCode.PERMISSION_DENIED, lambda: h.login("alice", PASSWORD, scopes=["x"]))

    second = refresh(first.refresh_token)
    assert refresh(first.refresh_token) == second  # a retry inside the grace window
    h.clock.advance(h.settings.refresh_grace_seconds + 1)
    expect(grpc.StatusCode.UNAUTHENTICATED, lambda: refresh(first.refresh_token))  # reuse
    expect(grpc.StatusCode.UNAUTHENTICATED, lambda: refresh(second.refresh_token))  # ended
    expect(grpc.StatusCode.UNAUTHENTICATED, lambda: refresh("rt1.not-a-token"))
    third = h.login("alice", PASSWORD)
    forged = third.refresh_token.rpartition(".")[0] + "." + secrets.token_urlsafe(32)
    expect(grpc.StatusCode.UNAUTHENTICATED, lambda: refresh(forged))  # refused

    assert validate(third.access_token).valid  # the view does not know it yet: a miss
    assert validate(third.access_token).valid  # now it does: a hit
    assert validate("not.a.token").reason == auth_pb2.INVALID_REASON_MALFORMED
    scope = auth_pb2.INVALID_REASON_INSUFFICIENT_SCOPE
    assert validate(third.access_token, "write").reason == scope
    h.revoke(third.access_token, auth_pb2.REVOKE_SCOPE_TOKEN)
    assert validate(third.access_token).reason == auth_pb2.INVALID_REASON_REVOKED  # a miss
    h.revoke(h.login("alice", PASSWORD).refresh_token, auth_pb2.REVOKE_SCOPE_SESSION)
    h.revoke(h.login("alice", PASSWORD).refresh_token, auth_pb2.REVOKE_SCOPE_USER)

    m = scrape(h.server.metrics_port)
    logins = {
        o: value(m, "authsvc_logins_total", outcome=o)
        for o in ("ok", "bad_credentials", "throttled", "denied_scope")
    }
    assert logins == {"ok": 4, "bad_credentials": 2, "throttled": 1, "denied_scope": 1}
    refreshes = {
        o: value(m, "authsvc_refreshes_total", outcome=o)
        for o in ("rotated", "grace_replay", "reuse_detected", "refused", "unknown")
    }
    assert refreshes == {
        "rotated": 1,
        "grace_replay": 1,
        "reuse_detected": 1,
        "refused": 1,
        "unknown": 2,
    }
    validations = {
        labels[0][1]: n for (name, labels), n in m.items() if name == "authsvc_validations_total"
    }
    assert validations == {
        "valid": 2,
        "malformed": 1,
        "insufficient_scope": 1,
        "revoked": 1,
        "bad_signature": 0,
        "expired": 0,
        "not_yet_valid": 0,
        "wrong_type": 0,
        "wrong_audience": 0,
        "wrong_issuer": 0,
        "unknown_key": 0,
    }
    assert value(m, "authsvc_revocation_view_lookups_total", result="hit") == 1
    assert value(m, "authsvc_revocation_view_lookups_total", result="miss") == 2
    assert value(m, "authsvc_revocation_view_live") == 1
    for scope_name in ("token", "session", "user"):
        assert value(m, "authsvc_revocations_total", scope=scope_name) == 1
    assert value(m, "authsvc_redis_up") == 1
    assert not [k for k in m if k[0] == "authsvc_redis_errors_total"]
    # Every Login that passed the throttle waited for a hashing thread once.
    assert value(m, "authsvc_password_hash_wait_seconds_count") == 7
    assert value(m, "authsvc_password_hash_queue_depth") == 0

    calls = {
        ("Login", "OK"): 4,
        ("Login", "UNAUTHENTICATED"): 2,
        ("Login", "RESOURCE_EXHAUSTED"): 1,
        ("Login", "PERMISSION_DENIED"): 1,
        ("Refresh", "OK"): 2,
        ("Refresh", "UNAUTHENTICATED"): 4,
        ("Validate", "OK"): 5,
        ("Revoke", "OK"): 3,
    }
    for (method, code), n in calls.items():
        assert handled(m, method, code) == n, (method, code)
    for method in ("Login", "Refresh", "Validate", "Revoke"):
        total = sum(n for (name, _), n in calls.items() if name == method)
        labels = {"grpc_type": "unary", "grpc_service": AUTH, "grpc_method": method}
        assert value(m, "grpc_server_started_total", **labels) == total
        assert value(m, "grpc_server_handling_seconds_count", **labels) == total
        assert value(m, "grpc_server_handling_seconds_bucket", le="+Inf", **labels) == total
    assert not [k for k in m if k[0].endswith("_created")]


def test_streams_are_counted_by_type_and_a_cancelled_one_as_cancelled(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(metrics_listen="127.0.0.1:0")
    health = health_pb2_grpc.HealthStub(h.channel)
    watch = health.Watch(health_pb2.HealthCheckRequest(service=AUTH))
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    watch.cancel()
    reflection = reflection_pb2_grpc.ServerReflectionStub(h.channel)
    asked = iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    (answer,) = reflection.ServerReflectionInfo(asked, timeout=10)  # to its end: OK
    assert answer.list_services_response.service
    watched = {
        "grpc_type": "server_stream",
        "grpc_service": "grpc.health.v1.Health",
        "grpc_method": "Watch",
    }
    reflected = {
        "grpc_type": "bidi_stream",
        "grpc_service": "grpc.reflection.v1alpha.ServerReflection",
        "grpc_method": "ServerReflectionInfo",
    }
    ends = [
        ("grpc_server_handled_total", tuple(sorted({**watched, "grpc_code": "CANCELLED"}.items()))),
        ("grpc_server_handled_total", tuple(sorted({**reflected, "grpc_code": "OK"}.items()))),
    ]
    m = wait_for(h.server.metrics_port, lambda s: all(s.get(end) == 1 for end in ends))
    assert value(m, "grpc_server_started_total", **watched) == 1
    assert value(m, "grpc_server_started_total", **reflected) == 1


def test_redis_errors_and_the_reconnect_are_counted(authsvc_server_factory: HarnessFactory) -> None:
    h = authsvc_server_factory(metrics_listen="127.0.0.1:0", revocation_view=False)
    h.create_user("alice", PASSWORD)
    token = h.login("alice", PASSWORD).access_token
    request = auth_pb2.ValidateRequest(access_token=token)
    port = h.server.metrics_port
    h.stop_redis()
    for _ in range(3):
        expect(grpc.StatusCode.UNAVAILABLE, lambda: h.stub.Validate(request, timeout=10))
    # The server counts a call as handled just after its answer left: wait for the last one.
    m = wait_for(
        port,
        lambda s: (
            s.get(("authsvc_redis_up", ())) == 0 and handled(s, "Validate", "UNAVAILABLE") >= 3
        ),
    )
    errors = value(
        m, "authsvc_redis_errors_total", operation="is_access_token_live", error="connection"
    )
    assert errors == 3
    assert handled(m, "Validate", "UNAVAILABLE") == 3
    assert value(m, "authsvc_redis_reconnects_total") == 0
    h.start_redis()
    m = wait_for(port, lambda s: s.get(("authsvc_redis_up", ())) == 1)
    assert value(m, "authsvc_redis_reconnects_total") == 1
    assert h.stub.Validate(request, timeout=10).valid


def test_login_throttles_by_scope_and_sheds_are_counted() -> None:
    metrics = Metrics()
    metrics.emit(events.LoginThrottled("a", "10.0.0.1", 30, events.ThrottleScope.SOURCE))
    metrics.emit(events.LoginThrottled("a", "10.0.0.1", 1))
    metrics.emit(events.LoginShed("b", "10.0.0.2", events.ShedReason.QUEUE_FULL))

    def sample(name: str, **labels: str) -> float:
        return metrics.registry.get_sample_value(name, labels) or 0.0

    assert sample("authsvc_logins_total", outcome="throttled") == 2
    assert sample("authsvc_logins_total", outcome="shed") == 1
    throttles = {s.value: sample("authsvc_login_throttles_total", scope=s.value)
                 for s in events.ThrottleScope}  # fmt: skip
    assert throttles == {"account": 1, "source": 1, "global": 0}


def test_hash_queue_depth_and_wait() -> None:
    metrics = Metrics()
    hasher = PasswordHasher(7168, 1, 1, threads=1)
    hasher.telemetry = metrics
    stored = hasher.hash("pw")

    def depth() -> float:
        return metrics.registry.get_sample_value("authsvc_password_hash_queue_depth") or 0.0

    async def scenario() -> list[bool]:
        # The only hashing thread is busy: whatever is submitted now waits in the queue.
        busy = threading.Event()
        blocker = hasher._pool.submit(busy.wait, 30)
        first = asyncio.ensure_future(hasher.verify_async(stored, "pw"))
        second = asyncio.ensure_future(hasher.verify_async(stored, "no"))
        await asyncio.sleep(0)  # both have been submitted
        assert depth() == 2
        second.cancel()  # leaves the queue without running
        with pytest.raises(asyncio.CancelledError):
            await second
        assert depth() == 1
        busy.set()
        blocker.result(timeout=30)
        return [await first]

    try:
        assert asyncio.run(scenario()) == [True]
    finally:
        hasher.close()
    assert depth() == 0
    assert metrics.registry.get_sample_value("authsvc_password_hash_wait_seconds_count") == 1
    waited = metrics.registry.get_sample_value("authsvc_password_hash_wait_seconds_sum")
    assert waited is not None and waited > 0


def test_metrics_are_off_unless_asked(authsvc_server: Harness) -> None:
    assert authsvc_server.server.metrics is None and authsvc_server.server.metrics_port == 0


VALID = ("authsvc_validations_total", (("reason", "valid"),))


def valid_count_per_process(directory: Path) -> dict[int, float]:
    """Valid Validate answers counted by each process, read from its own value file."""
    counts = {}
    for path in directory.glob("counter_*.db"):
        merged = MultiProcessCollector.merge([str(path)])  # type: ignore[no-untyped-call]
        for family in merged:
            for sample in family.samples:
                if (sample.name, tuple(sorted(sample.labels.items()))) == VALID:
                    counts[int(path.stem.split("_")[1])] = sample.value
    return counts


def test_with_two_workers_the_counts_of_both_processes_are_summed(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    port, metrics_port = free_port(), free_port()
    values = tmp_path / "multiproc"
    values.mkdir()
    # Values an earlier run left behind: the supervisor must start from a clean directory.
    stale = MmapedDict(str(values / "counter_999999.db"))  # type: ignore[no-untyped-call]
    stale.write_value(  # type: ignore[no-untyped-call]
        mmap_key("authsvc_validations", "authsvc_validations_total", ["reason"], ["valid"], ""),
        1000.0,
        0.0,
    )
    stale.close()  # type: ignore[no-untyped-call]
    env = env_without_authsvc_settings(
        AUTHSVC_REDIS_URL=redis.url,
        AUTHSVC_DATA_DIR=str(tmp_path / "data"),
        AUTHSVC_LISTEN=f"127.0.0.1:{port}",
        AUTHSVC_METRICS_LISTEN=f"127.0.0.1:{metrics_port}",
        PROMETHEUS_MULTIPROC_DIR=str(values),
    )
    subprocess.run(
        [AUTHSVC_BIN, "user", "add", "alice", "--password-stdin"],
        env=env,
        check=True,
        input=f"{PASSWORD}\n{PASSWORD}\n",
        text=True,
        capture_output=True,
        timeout=60,
    )
    with (tmp_path / "server.log").open("w") as log:
        server = subprocess.Popen(
            [AUTHSVC_BIN, "serve", "--workers", "2"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        target = f"127.0.0.1:{port}"
        with grpc.insecure_channel(target) as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            pair = stub.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD))
        request = auth_pb2.ValidateRequest(access_token=pair.access_token)
        validated = 0
        # Each channel its own connection, which the kernel hands to either worker;
        # continue until both have answered (bounded: both are up within the deadline).
        deadline = time.monotonic() + 60
        while len([n for n in valid_count_per_process(values).values() if n]) < 2:
            assert validated < 400 and time.monotonic() < deadline, "one worker got it all"
            options = [("grpc.use_local_subchannel_pool", 1)]
            with grpc.insecure_channel(target, options=options) as channel:
                stub = auth_pb2_grpc.AuthServiceStub(channel)
                assert stub.Validate(request, timeout=10).valid
                validated += 1
        per_process = valid_count_per_process(values)
        m = scrape(metrics_port)
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        redis.stop()
    assert server.returncode == 0, (tmp_path / "server.log").read_text()
    assert len(per_process) == 2 and 999999 not in per_process
    assert sum(per_process.values()) == validated
    assert m[VALID] == validated
    assert handled(m, "Validate", "OK") == validated
    assert value(m, "authsvc_logins_total", outcome="ok") == 1
    assert value(m, "authsvc_redis_up") == 1
