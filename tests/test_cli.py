"""The `authsvc` command end to end: admin commands, client calls, `serve` with the
embedded Redis default, graceful shutdown on SIGTERM."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc

from authsvc.config import SETTINGS
from authsvc.keys import generate_private_key, private_key_pem
from authsvc.redis_process import free_port
from tests.harness import AUTHSVC_BIN, Harness, env_without_authsvc_settings


def cli(
    env: dict[str, str], *args: str, stdin: str = "", check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [AUTHSVC_BIN, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def env(authsvc_server: Harness) -> dict[str, str]:
    base = env_without_authsvc_settings()
    base.update(
        AUTHSVC_REDIS_URL=authsvc_server.settings.redis_url,
        AUTHSVC_DATA_DIR=str(authsvc_server.settings.data_dir),
        AUTHSVC_LISTEN=authsvc_server.target,
    )
    return base


def test_shell_flow_add_login_validate_refresh_revoke(env: dict[str, str]) -> None:
    out = cli(
        env,
        "user",
        "add",
        "alice",
        "--scopes",
        "read,write",
        "--password-stdin",
        stdin="s3cret pass\ns3cret pass\n",
    )
    assert "alice created" in out.stdout
    assert "alice\tuser\tactive\tread write" in cli(env, "user", "list").stdout
    pair = json.loads(cli(env, "login", "alice", "--password-stdin", stdin="s3cret pass\n").stdout)
    assert pair["tokenType"] == "Bearer"
    answer = json.loads(cli(env, "validate", "-", stdin=pair["accessToken"] + "\n").stdout)
    assert answer["valid"] is True and answer["claims"]["subject"] == "alice"
    new = json.loads(cli(env, "refresh", pair["refreshToken"]).stdout)
    assert new["refreshToken"] != pair["refreshToken"]
    cli(env, "revoke", "-", "--what", "session", stdin=new["refreshToken"] + "\n")
    answer = json.loads(cli(env, "validate", new["accessToken"]).stdout)
    assert answer == {"reason": "INVALID_REASON_REVOKED"}
    failed = cli(env, "refresh", new["refreshToken"], check=False)
    assert failed.returncode == 1 and "UNAUTHENTICATED" in failed.stderr
    assert "Traceback" not in failed.stderr


def test_wrong_password_and_duplicates_are_clear_errors(env: dict[str, str]) -> None:
    cli(env, "user", "add", "bob", "--password-stdin", stdin="pw-one-1\npw-one-1\n")
    dup = cli(env, "user", "add", "bob", "--password-stdin", stdin="x\nx\n", check=False)
    assert dup.returncode == 2 and "already exists" in dup.stderr
    bad = cli(env, "login", "bob", "--password-stdin", stdin="nope\n", check=False)
    assert bad.returncode == 1 and "UNAUTHENTICATED: invalid username or password" in bad.stderr
    assert "Traceback" not in bad.stderr + dup.stderr


def test_disable_and_passwd_end_sessions(env: dict[str, str]) -> None:
    cli(env, "user", "add", "carol", "--password-stdin", stdin="pw-carol\npw-carol\n")
    pair = json.loads(cli(env, "login", "carol", "--password-stdin", stdin="pw-carol\n").stdout)
    assert (
        "1 session(s) ended"
        in cli(
            env, "user", "passwd", "carol", "--password-stdin", stdin="pw-new-1\npw-new-1\n"
        ).stdout
    )
    assert json.loads(cli(env, "validate", pair["accessToken"]).stdout)["reason"] == (
        "INVALID_REASON_REVOKED"
    )
    cli(env, "login", "carol", "--password-stdin", stdin="pw-new-1\n")
    assert "disabled" in cli(env, "user", "disable", "carol").stdout
    denied = cli(env, "login", "carol", "--password-stdin", stdin="pw-new-1\n", check=False)
    assert "UNAUTHENTICATED" in denied.stderr
    assert "carol\tuser\tdisabled" in cli(env, "user", "list").stdout
    cli(env, "user", "enable", "carol")
    cli(env, "login", "carol", "--password-stdin", stdin="pw-new-1\n")


def test_client_add_prints_a_secret_that_logs_in(env: dict[str, str]) -> None:
    out = cli(env, "client", "add", "billing", "--scopes", "invoices").stdout
    secret = out.strip().splitlines()[-1]
    assert len(secret) >= 43
    pair = json.loads(cli(env, "login", "billing", "--password-stdin", stdin=secret + "\n").stdout)
    assert pair["scopes"] == ["invoices"]
    cli(env, "user", "scopes", "billing", "--scopes", "invoices,reports")
    assert "invoices reports" in cli(env, "user", "list").stdout


def test_bad_configuration_fails_at_start_naming_the_setting(env: dict[str, str]) -> None:
    for name, value in [
        ("AUTHSVC_ACCESS_TTL_SECONDS", "soon"),
        ("AUTHSVC_LISTEN", "nowhere"),
        ("AUTHSVC_SIGNING_ALG", "HS256"),
        ("AUTHSVC_REFRESH_GRACE_SECONDS", "61"),
        ("AUTHSVC_NO_SUCH_THING", "1"),
    ]:
        result = cli({**env, name: value}, "serve", check=False)
        assert result.returncode == 2 and name in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


def test_serve_has_a_flag_for_every_setting_and_a_bad_flag_is_named() -> None:
    env = env_without_authsvc_settings(COLUMNS="200")
    shown = cli(env, "serve", "--help").stdout
    for setting in SETTINGS:
        assert f"{setting.flag} VALUE" in shown and setting.env in shown, setting.name
    result = cli(env, "serve", "--access-ttl-seconds", "soon", check=False)
    assert result.returncode == 2 and "--access-ttl-seconds" in result.stderr, result.stderr


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A short path: the embedded Redis listens on a unix socket under the data directory.
    with tempfile.TemporaryDirectory(prefix="as-", dir="/tmp") as d:
        yield Path(d)


def test_serve_with_embedded_redis_and_graceful_sigterm(short_dir: Path) -> None:
    env = env_without_authsvc_settings()
    port = free_port()
    env.update(AUTHSVC_DATA_DIR=str(short_dir), AUTHSVC_LISTEN=f"127.0.0.1:{port}")
    # Admin command with no Redis configured: starts the embedded one, and stops it after.
    cli(env, "user", "add", "dave", "--password-stdin", stdin="pw-dave-1\npw-dave-1\n")
    assert not (short_dir / "redis" / "redis.sock").exists()
    server = subprocess.Popen(
        [AUTHSVC_BIN, "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=30)
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            pair = stub.Login(auth_pb2.LoginRequest(username="dave", password="pw-dave-1"))
            assert stub.Validate(auth_pb2.ValidateRequest(access_token=pair.access_token)).valid
            # While the server runs, admin commands share its embedded Redis, and leaving
            # it does not stop it under the server.
            assert "dave" in cli(env, "user", "list").stdout
            cli(env, "user", "add", "erin", "--password-stdin", stdin="pw-erin-1\npw-erin-1\n")
            assert stub.Validate(auth_pb2.ValidateRequest(access_token=pair.access_token)).valid
            assert stub.Login(auth_pb2.LoginRequest(username="erin", password="pw-erin-1"))
        # The signing key lives in the embedded Redis, sealed under this generated KEK.
        kek = short_dir / "keys" / "key-encryption.key"
        assert kek.stat().st_mode & 0o777 == 0o600
        assert (short_dir / "redis" / "appendonlydir").is_dir()
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert f"127.0.0.1:{port}" in out and "authsvc user add" in out
    assert "s3cret" not in err and "pw-dave-1" not in err and pair.access_token not in err
    assert not (short_dir / "redis" / "redis.sock").exists()  # embedded Redis stopped
    # Data persisted: a new embedded Redis still knows the user.
    assert "dave" in cli(env, "user", "list").stdout


def test_keys_rotate_and_list_share_the_ring_with_the_server(
    env: dict[str, str], authsvc_server: Harness, tmp_path: Path
) -> None:
    h = authsvc_server
    (old,) = json.loads(h.stub.GetJwks(auth_pb2.GetJwksRequest()).jwks_json)["keys"]
    out = cli(env, "keys", "rotate").stdout
    new = out.split()[1]
    assert f"key {new} (EdDSA) published; it signs from" in out
    h.clock.advance(10)  # the server's next read of the ring
    jwks = json.loads(h.stub.GetJwks(auth_pb2.GetJwksRequest()).jwks_json)
    assert [k["kid"] for k in jwks["keys"]] == [old["kid"], new]
    listing = cli(env, "keys", "list").stdout.splitlines()
    assert [line.split("\t")[:3] for line in listing] == [
        [old["kid"], "EdDSA", "signing"],
        [new, "EdDSA", "published"],
    ]
    assert "sealed" not in "\n".join(listing) and "PRIVATE" not in "\n".join(listing)
    pem = tmp_path / "signing.pem"
    pem.write_bytes(private_key_pem(generate_private_key("EdDSA")))
    refused = cli(env | {"AUTHSVC_SIGNING_KEY_FILE": str(pem)}, "keys", "rotate", check=False)
    assert refused.returncode == 2 and "AUTHSVC_SIGNING_KEY_FILE" in refused.stderr


def test_revoke_of_others_sessions_with_an_access_token_takes_an_admin_token(
    env: dict[str, str], tmp_path: Path
) -> None:
    cli(env, "user", "add", "root", "--scopes", "authsvc:admin", "--password-stdin",
        stdin="pw-root-1\npw-root-1\n")  # fmt: skip
    cli(env, "user", "add", "frank", "--password-stdin", stdin="pw-frank\npw-frank\n")
    admin = json.loads(cli(env, "login", "root", "--password-stdin", stdin="pw-root-1\n").stdout)
    pair = json.loads(cli(env, "login", "frank", "--password-stdin", stdin="pw-frank\n").stdout)
    refused = cli(env, "revoke", pair["accessToken"], "--what", "user", check=False)
    assert refused.returncode == 1 and "PERMISSION_DENIED" in refused.stderr
    assert json.loads(cli(env, "validate", pair["accessToken"]).stdout)["valid"] is True
    token_file = tmp_path / "admin.token"
    token_file.write_text(admin["accessToken"] + "\n")
    cli(env, "revoke", pair["accessToken"], "--what", "user",
        "--bearer-token-file", str(token_file))  # fmt: skip
    answer = json.loads(cli(env, "validate", pair["accessToken"]).stdout)
    assert answer == {"reason": "INVALID_REASON_REVOKED"}
    missing = cli(env, "revoke", pair["accessToken"], "--bearer-token-file",
                  str(tmp_path / "nope"), check=False)  # fmt: skip
    assert missing.returncode == 2 and "cannot read" in missing.stderr
    assert "Traceback" not in refused.stderr + missing.stderr


def test_names_are_canonical_and_audiences_set_from_the_shell(env: dict[str, str]) -> None:
    out = cli(env, "user", "add", "Grace", "--password-stdin", stdin="pw-grace\npw-grace\n")
    assert "user grace created" in out.stdout
    dup = cli(env, "user", "add", "GRACE", "--password-stdin", stdin="x\nx\n", check=False)
    assert dup.returncode == 2 and "already exists" in dup.stderr
    cli(env, "user", "audiences", "GRACE", "--audiences", "authsvc")
    assert "grace\tuser\tactive\t\taudiences=authsvc" in cli(env, "user", "list").stdout
    bad = cli(env, "user", "audiences", "grace", "--audiences", "a b", check=False)
    assert bad.returncode == 2 and "audiences must be" in bad.stderr
    # An undecodable byte in argv reaches Python as a lone surrogate: a clear error.
    hostile = subprocess.run(
        [AUTHSVC_BIN, "user", "disable", b"gr\xffce"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert hostile.returncode == 2 and "not valid Unicode" in hostile.stderr
    assert "Traceback" not in dup.stderr + bad.stderr + hostile.stderr
