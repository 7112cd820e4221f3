"""TLS and mTLS on the server port, and the CLI connecting with them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import grpc
import pytest
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc

from authsvc import events
from authsvc.config import load_settings
from authsvc.errors import ConfigError
from tests.certs import Pem, make_pki, mtls_settings
from tests.harness import AUTHSVC_BIN, HarnessFactory, env_without_authsvc_settings

PASSWORD = "correct horse battery staple"


def tls_channel(target: str, ca: Pem, client: Pem | None = None) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.cert.read_bytes(),
        private_key=client.key.read_bytes() if client else None,
        certificate_chain=client.cert.read_bytes() if client else None,
    )
    return grpc.secure_channel(target, credentials)


def jwks_code(channel: grpc.Channel) -> grpc.StatusCode:
    try:
        auth_pb2_grpc.AuthServiceStub(channel).GetJwks(auth_pb2.GetJwksRequest(), timeout=10)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_tls_serves_verified_clients_and_refuses_plaintext(
    authsvc_server_factory: HarnessFactory, tmp_path: Path
) -> None:
    ca, server, _ = make_pki(tmp_path)
    h = authsvc_server_factory(tls_cert_file=str(server.cert), tls_key_file=str(server.key))
    h.create_user("alice", PASSWORD)
    with tls_channel(h.target, ca) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        pair = stub.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD))
        assert stub.Validate(auth_pb2.ValidateRequest(access_token=pair.access_token)).valid
    with grpc.insecure_channel(h.target) as plain:
        assert jwks_code(plain) == grpc.StatusCode.UNAVAILABLE


def test_mtls_requires_a_client_certificate_from_the_ca(
    authsvc_server_factory: HarnessFactory, tmp_path: Path
) -> None:
    ca, server, client = make_pki(tmp_path)
    h = authsvc_server_factory(**mtls_settings(ca, server))
    with tls_channel(h.target, ca, client) as channel:
        assert jwks_code(channel) == grpc.StatusCode.OK
    with tls_channel(h.target, ca) as channel:  # no client certificate
        assert jwks_code(channel) == grpc.StatusCode.UNAVAILABLE
    (tmp_path / "other").mkdir()
    _, _, stranger = make_pki(tmp_path / "other")
    with tls_channel(h.target, ca, stranger) as channel:  # a certificate from another CA
        assert jwks_code(channel) == grpc.StatusCode.UNAVAILABLE


def test_cli_connects_with_mtls(authsvc_server_factory: HarnessFactory, tmp_path: Path) -> None:
    ca, server, client = make_pki(tmp_path)
    h = authsvc_server_factory(**mtls_settings(ca, server))
    h.create_user("alice", PASSWORD)
    env = env_without_authsvc_settings()
    args = ["--target", h.target, "--ca", str(ca.cert), "--cert", str(client.cert),
            "--key", str(client.key)]  # fmt: skip
    out = subprocess.run(
        [AUTHSVC_BIN, "login", "alice", "--password-stdin", *args],
        input=PASSWORD + "\n", capture_output=True, text=True, env=env, timeout=60, check=True,
    )  # fmt: skip
    assert json.loads(out.stdout)["tokenType"] == "Bearer"


def test_tls_settings_must_come_together(tmp_path: Path) -> None:
    ca, server, _ = make_pki(tmp_path)
    with pytest.raises(ConfigError, match="AUTHSVC_TLS_KEY_FILE"):
        load_settings(env={"AUTHSVC_TLS_CERT_FILE": str(server.cert)})
    with pytest.raises(ConfigError, match="AUTHSVC_TLS_CLIENT_CA_FILE"):
        load_settings(env={"AUTHSVC_TLS_CLIENT_CA_FILE": str(ca.cert)})
    with pytest.raises(ConfigError, match="AUTHSVC_TLS_CERT_FILE"):
        load_settings(env={"AUTHSVC_TLS_CERT_FILE": str(tmp_path / "missing.crt")})


def test_an_mtls_caller_is_known_by_its_certificate_not_its_address(
    authsvc_server_factory: HarnessFactory, tmp_path: Path
) -> None:
    ca, server, client = make_pki(tmp_path)
    h = authsvc_server_factory(**mtls_settings(ca, server))
    h.create_user("alice", PASSWORD)
    with tls_channel(h.target, ca, client) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        pair = stub.Login(auth_pb2.LoginRequest(username="alice", password=PASSWORD))
    assert h.events.events == [events.LoginSucceeded("alice", "mtls:orders-svc", pair.session_id)]
