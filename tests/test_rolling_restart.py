"""Rolling restart: three `authsvc serve` processes behind one client channel
(`ipv4:a,b,c`, round_robin, client-side health checking), stopped and started one by one
while callers use the client library; the callers see no failed call."""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from authsvc_client import AuthsvcClient, CallRetry, Credentials, RefreshPolicy, TokenManager
from grpc_health.v1 import health_pb2, health_pb2_grpc

from authsvc.redis_process import RedisProcess, free_port, wait_until
from tests.harness import AUTHSVC_BIN, env_without_authsvc_settings

PASSWORD = "correct horse battery staple"
SERVICE = "authsvc.v1.AuthService"
# What the README's client configuration shows.
SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "healthCheckConfig": {"serviceName": SERVICE},
}


class Instance:
    """One `authsvc serve` on a fixed port (it comes back on the same one)."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env = {**env, "AUTHSVC_LISTEN": f"127.0.0.1:{port}"}
        self.target = f"127.0.0.1:{port}"
        self._log_path = log
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [AUTHSVC_BIN, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        wait_until(self._serving, f"{self.target} SERVING", 30)

    def _serving(self) -> bool:
        assert self._proc is not None and self._proc.poll() is None, "authsvc serve exited"
        with grpc.insecure_channel(self.target) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=SERVICE), timeout=1
                )
            except grpc.RpcError:
                return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    def stop(self) -> None:
        """SIGTERM (graceful: NOT_SERVING, drain, finish in-flight calls) and wait."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            assert self._proc.wait(timeout=30) == 0
            self._proc = None


@pytest.fixture
def instances(tmp_path: Path) -> Iterator[list[Instance]]:
    redis = RedisProcess(tmp_path / "redis").start()
    env = env_without_authsvc_settings(
        AUTHSVC_REDIS_URL=redis.url,
        AUTHSVC_DATA_DIR=str(tmp_path / "data"),
        AUTHSVC_ACCESS_TTL_SECONDS="4",
        AUTHSVC_SHUTDOWN_DRAIN_SECONDS="1",
        AUTHSVC_HEALTH_INTERVAL_SECONDS="0.2",
        AUTHSVC_HASH_THREADS="1",
    )
    subprocess.run(
        [AUTHSVC_BIN, "user", "add", "alice", "--password-stdin"],
        env=env, input=f"{PASSWORD}\n{PASSWORD}\n", text=True, check=True,
        capture_output=True, timeout=60,
    )  # fmt: skip
    made = [Instance(env, free_port(), tmp_path / f"authsvc{i}.log") for i in range(3)]
    try:
        for instance in made:
            instance.start()
        yield made
    finally:
        for instance in made:
            instance.stop()
        redis.stop()


@pytest.mark.timeout(300)
def test_a_rolling_restart_under_load_fails_no_call(instances: list[Instance]) -> None:
    target = "ipv4:" + ",".join(i.target for i in instances)
    options = [("grpc.service_config", json.dumps(SERVICE_CONFIG))]
    failures: list[BaseException] = []
    calls = [0]
    stop = threading.Event()
    with grpc.insecure_channel(target, options=options) as channel:
        client = AuthsvcClient(channel, retry=CallRetry())
        # Access tokens live 4 s and are refreshed with 2 s left: many Refreshes too.
        manager = TokenManager(
            client,
            credentials=Credentials.password("alice", PASSWORD),
            policy=RefreshPolicy(min_margin=2.0, max_margin_fraction=0.5),
        )

        def caller() -> None:
            while not stop.is_set():
                try:
                    client.validate(manager.access_token(), "", [])
                    if calls[0] % 50 == 0:
                        client.get_jwks()
                    calls[0] += 1
                except Exception as exc:  # noqa: BLE001 - every failure is the finding
                    failures.append(exc)
                time.sleep(0.002)

        threads = [threading.Thread(target=caller, daemon=True) for _ in range(4)]
        for t in threads:
            t.start()
        wait_until(lambda: calls[0] > 100, "calls flowing", 30)
        for instance in instances:
            before = calls[0]
            instance.stop()
            instance.start()
            wait_until(lambda before=before: calls[0] > before + 100, "calls flowing", 30)  # type: ignore[misc]
        stop.set()
        for t in threads:
            t.join(timeout=30)
    assert not failures, failures[:3]
    assert calls[0] > 500
