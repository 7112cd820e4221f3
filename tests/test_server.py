"""Server behaviour: reflection, graceful shutdown with calls in flight, workers, and
the refusal to serve plaintext off loopback by accident."""

from __future__ import annotations

import logging
import signal
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from authsvc.config import Settings
from authsvc.errors import ConfigError
from authsvc.redis_process import RedisProcess, free_port
from authsvc.server import check_plaintext
from tests.certs import make_pki
from tests.harness import (
    AUTHSVC_BIN,
    Harness,
    HarnessFactory,
    env_without_authsvc_settings,
)

PASSWORD = "correct horse battery staple"


def test_reflection_lists_the_services(authsvc_server: Harness) -> None:
    db = ProtoReflectionDescriptorDatabase(authsvc_server.channel)
    services = set(db.get_services())
    assert {"authsvc.v1.AuthService", "grpc.health.v1.Health"} <= services
    method = db.FindFileContainingSymbol("authsvc.v1.AuthService")
    assert method.package == "authsvc.v1"


def test_in_flight_calls_finish_during_graceful_shutdown(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("alice", PASSWORD)

    def login(_: int) -> str:
        return h.login("alice", PASSWORD).access_token

    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [pool.submit(login, i) for i in range(8)]
        h.wait_for_calls("Login", 8)  # all eight accepted by the server
        h.stop_server()
        tokens = [f.result(timeout=30) for f in futures]
    assert all(tokens)
    with pytest.raises(grpc.RpcError):  # and the server is really gone
        h.login("alice", PASSWORD)


def test_workers_share_one_port_and_one_key_set(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path / "redis").start()
    port = free_port()
    env = env_without_authsvc_settings()
    env.update(
        AUTHSVC_REDIS_URL=redis.url,
        AUTHSVC_DATA_DIR=str(tmp_path / "data"),
        AUTHSVC_LISTEN=f"127.0.0.1:{port}",
    )
    subprocess.run(
        [AUTHSVC_BIN, "user", "add", "alice", "--password-stdin"],
        env=env,
        check=True,
        input=f"{PASSWORD}\n{PASSWORD}\n",
        text=True,
        capture_output=True,
    )
    server = subprocess.Popen(
        [AUTHSVC_BIN, "serve", "--workers", "2"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        kids = set()
        for _ in range(6):  # new connections land on either worker
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                grpc.channel_ready_future(channel).result(timeout=30)
                stub = auth_pb2_grpc.AuthServiceStub(channel)
                pair = stub.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD))
                kids.add(stub.GetJwks(auth_pb2.GetJwksRequest()).jwks_json)
                assert stub.Validate(auth_pb2.ValidateRequest(access_token=pair.access_token)).valid
        assert len(kids) == 1
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)
        redis.stop()
    assert server.returncode == 0


def test_reflection_can_be_switched_off(authsvc_server_factory: HarnessFactory) -> None:
    h = authsvc_server_factory(reflection=False)
    with pytest.raises(grpc.RpcError) as excinfo:
        ProtoReflectionDescriptorDatabase(h.channel).get_services()
    assert excinfo.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert h.stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=10).jwks_json  # still serving


@pytest.mark.parametrize("listen", ["127.0.0.1:50051", "127.8.9.10:1", "[::1]:50051",
                                    "localhost:50051"])  # fmt: skip
def test_plaintext_on_loopback_needs_no_choice(listen: str) -> None:
    settings = Settings(listen=listen)
    assert settings.listens_on_loopback
    check_plaintext(settings)


@pytest.mark.parametrize(
    "listen", ["0.0.0.0:50051", "[::]:50051", "10.1.2.3:50051", "authsvc.internal:50051"]
)
def test_plaintext_off_loopback_is_refused_unless_chosen(
    listen: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ConfigError, match="AUTHSVC_ALLOW_PLAINTEXT"):
        check_plaintext(Settings(listen=listen))
    with caplog.at_level(logging.WARNING, logger="authsvc.server"):
        check_plaintext(Settings(listen=listen, allow_plaintext=True))
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "plaintext" in caplog.records[0].getMessage()


def test_tls_off_loopback_needs_no_choice(tmp_path: Path) -> None:
    _, server, _ = make_pki(tmp_path)
    check_plaintext(
        Settings(listen="0.0.0.0:50051", tls_cert_file=str(server.cert),
                 tls_key_file=str(server.key))
    )  # fmt: skip


def test_serve_refuses_plaintext_off_loopback_before_binding(tmp_path: Path) -> None:
    # TEST-NET-1 (RFC 5737): not loopback, and never an address of this host, so even a
    # server that failed to refuse could not listen on a real network interface.
    env = env_without_authsvc_settings(
        AUTHSVC_LISTEN=f"192.0.2.1:{free_port()}", AUTHSVC_DATA_DIR=str(tmp_path / "data")
    )
    result = subprocess.run(
        [AUTHSVC_BIN, "serve"], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "AUTHSVC_ALLOW_PLAINTEXT" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "redis").exists()  # stopped before starting anything
