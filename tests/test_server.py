"""Server behaviour: reflection, graceful shutdown with calls in flight, workers."""

from __future__ import annotations

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

from tests.harness import (
    AUTHSVC_BIN,
    Harness,
    RedisProcess,
    env_without_authsvc_settings,
    free_port,
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
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
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
