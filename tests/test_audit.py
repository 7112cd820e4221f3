"""The audit trail: a scripted attack through a real `authsvc serve`, then its JSON lines."""

from __future__ import annotations

import base64
import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from authsvc import events
from authsvc.audit import audit_record, current_os_user
from authsvc.config import load_settings
from authsvc.errors import ConfigError
from authsvc.redis_process import RedisProcess, free_port
from tests.harness import (
    AUTHSVC_BIN,
    Harness,
    env_without_authsvc_settings,
)

ALICE_PW = "alice-Secret-pw-1"
BOB_PW = "bob-Secret-pw-2"
GUESSES = ("guess-Secret-1", "guess-Secret-2", "guess-Secret-3", "guess-Secret-4")
LOCAL = "127.0.0.1"

#: The README's table: every event's fields after `ts`, `logger` and `event`.
SCHEMA = {
    "login_succeeded": ["account", "source", "session"],
    "login_failed": ["account", "source", "reason"],
    "login_throttled": ["account", "source", "retry_after_seconds", "scope"],
    "login_shed": ["account", "source", "reason"],
    "refresh_rotated": ["account", "source", "session"],
    "revoked": ["account", "source", "session", "what", "by"],
    "revoke_refused": ["account", "source", "session", "what", "reason"],
    "account_changed": ["account", "source", "action", "by", "sessions_ended"],
    "key_rotated": ["kid", "source", "by", "previous_kid"],
}


def test_every_event_has_its_stable_name_and_fields() -> None:
    samples: list[events.Event] = [
        events.LoginSucceeded("a", "s", "sid"),
        events.LoginFailed("a", "s", events.LoginFailure.BAD_CREDENTIALS),
        events.LoginThrottled("a", "s", 2),
        events.LoginShed("a", "s", events.ShedReason.QUEUE_FULL),
        events.Refreshed("a", "s", "sid", events.RefreshOutcome.ROTATED),
        events.Revoked("a", "s", "sid", "token", "s"),
        events.RevokeRefused("a", "s", "sid", "user", events.RevokeRefusal.NOT_ADMINISTRATOR),
        events.AccountChanged("a", "s", "disabled", "s", 1),
        events.KeyRotated("kid", "s", "schedule", "old"),
    ]
    assert {(r := audit_record(e))["event"]: list(r)[2:] for e in samples} == SCHEMA
    for outcome in events.RefreshOutcome:
        record = audit_record(events.Refreshed("a", "s", "sid", outcome))
        assert record["event"] == f"refresh_{outcome.value}"
        assert list(record)[2:] == SCHEMA["refresh_rotated"]
    assert audit_record(samples[1])["reason"] == "bad_credentials"


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [AUTHSVC_BIN, *args], input=stdin, capture_output=True, text=True, env=env, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result


def signing_key_file(path: Path) -> Path:
    """A fresh Ed25519 signing key in a PEM file (0600), as an operator would provide it."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(pem)
    path.chmod(0o600)
    return path


def key_material(key_file: Path) -> list[str]:
    """The signing key as it could leak: PEM body lines, raw bytes in base64url and hex."""
    pem = key_file.read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    raw = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    body = [line for line in pem.decode().splitlines() if line and not line.startswith("-----")]
    return [*body, base64.urlsafe_b64encode(raw).decode().rstrip("="), raw.hex()]


def test_a_scripted_attack_is_traced_and_no_secret_is_written(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path / "redis")
    redis.start()
    port = free_port()
    trail, stderr = tmp_path / "audit.jsonl", tmp_path / "server.err"
    env = env_without_authsvc_settings(
        AUTHSVC_REDIS_URL=redis.url,
        AUTHSVC_DATA_DIR=str(tmp_path / "data"),
        AUTHSVC_SIGNING_KEY_FILE=str(signing_key_file(tmp_path / "signing.pem")),
        AUTHSVC_LISTEN=f"127.0.0.1:{port}",
        AUTHSVC_AUDIT_LOG=str(trail),
        AUTHSVC_LOG_LEVEL="DEBUG",
        AUTHSVC_LOGIN_MAX_FAILURES="3",
        AUTHSVC_REFRESH_GRACE_SECONDS="0",
    )
    tokens: list[str] = []
    admin_err = ""
    try:
        for name, pw in (("alice", ALICE_PW), ("bob", BOB_PW)):
            admin_err += cli(
                env, "user", "add", name, "--password-stdin", stdin=f"{pw}\n{pw}\n"
            ).stderr
        created = cli(env, "client", "add", "billing", "--scopes", "invoices")
        client_secret = created.stdout.strip().splitlines()[-1]
        admin_err += created.stderr
        with stderr.open("w") as err, grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            server = subprocess.Popen([AUTHSVC_BIN, "serve"], env=env, stdout=err, stderr=err)
            try:
                grpc.channel_ready_future(channel).result(timeout=30)
                sessions = attack(auth_pb2_grpc.AuthServiceStub(channel), client_secret, tokens)
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=30)
        admin_err += cli(env, "user", "disable", "bob").stderr
        secrets = [ALICE_PW, BOB_PW, *GUESSES, client_secret, *tokens]
        secrets += key_material(tmp_path / "signing.pem")
    finally:
        redis.stop()
    assert server.returncode == 0
    assert trail.stat().st_mode & 0o777 == 0o600

    lines = [json.loads(line) for line in trail.read_text().splitlines()]
    assert all(line.pop("logger") == "authsvc.audit" and line.pop("ts") for line in lines)
    s1, s2, s3, s4, s5 = sessions
    me = current_os_user()

    def changed(account: str, action: str, ended: int = 0) -> dict[str, Any]:
        return {
            "event": "account_changed",
            "account": account,
            "source": "local",
            "action": action,
            "by": "local",
            "sessions_ended": ended,
            "os_user": me,
        }

    def failed(account: str) -> dict[str, Any]:
        return {
            "event": "login_failed",
            "account": account,
            "source": LOCAL,
            "reason": "bad_credentials",
        }

    def session_event(event: str, account: str, sid: str, **more: Any) -> dict[str, Any]:
        return {"event": event, "account": account, "source": LOCAL, "session": sid, **more}

    assert lines[7].pop("retry_after_seconds") >= 1
    assert lines == [
        changed("alice", "user_created"),
        changed("bob", "user_created"),
        changed("billing", "client_created"),
        failed("root"),
        failed("alice"),
        failed("alice"),
        failed("alice"),
        # The fourth guess never reached a password check.
        {"event": "login_throttled", "account": "alice", "source": LOCAL, "scope": "account"},
        session_event("login_succeeded", "bob", s1),
        session_event("refresh_rotated", "bob", s1),
        session_event("refresh_reuse_detected", "bob", s1),
        session_event("refresh_unknown", "bob", s1),
        session_event("login_succeeded", "bob", s2),
        session_event("revoked", "bob", s2, what="token", by=LOCAL),
        session_event("login_succeeded", "bob", s3),
        session_event("revoked", "bob", s3, what="session", by=LOCAL),
        session_event("login_succeeded", "bob", s4),
        session_event("revoke_refused", "bob", s4, what="user", reason="not_administrator"),
        session_event("revoked", "bob", s4, what="user", by=LOCAL),
        session_event("login_succeeded", "billing", s5),
        changed("bob", "disabled"),
    ]
    regular = stderr.read_text()
    assert '"event":"serving"' in regular  # the regular log was captured (not vacuous)
    assert "authsvc.audit" not in regular  # the trail went to its own file only
    everything = trail.read_text() + regular + admin_err
    leaked = [s for s in secrets if s in everything]
    assert not leaked, f"{len(leaked)} secrets written"


def attack(stub: auth_pb2_grpc.AuthServiceStub, client_secret: str, tokens: list[str]) -> list[str]:
    """The scripted attack and the victims' own calls; returns the sessions opened."""

    def login(name: str, password: str) -> auth_pb2.LoginResponse:
        pair = stub.Login(auth_pb2.LoginRequest(username=name, password=password), timeout=30)
        tokens.extend((pair.access_token, pair.refresh_token))
        return pair

    def refused(code: grpc.StatusCode, name: str, password: str) -> None:
        with pytest.raises(grpc.RpcError) as err:
            login(name, password)
        assert err.value.code() == code

    def refresh(token: str) -> auth_pb2.RefreshResponse:
        pair = stub.Refresh(auth_pb2.RefreshRequest(refresh_token=token), timeout=10)
        tokens.extend((pair.access_token, pair.refresh_token))
        return pair

    def revoke(token: str, scope: auth_pb2.RevokeScope.ValueType) -> None:
        stub.Revoke(auth_pb2.RevokeRequest(token=token, scope=scope), timeout=10)

    refused(grpc.StatusCode.UNAUTHENTICATED, "root", GUESSES[0])
    for guess in GUESSES[:3]:
        refused(grpc.StatusCode.UNAUTHENTICATED, "alice", guess)
    refused(grpc.StatusCode.RESOURCE_EXHAUSTED, "alice", GUESSES[3])
    first = login("bob", BOB_PW)
    second = refresh(first.refresh_token)
    with pytest.raises(grpc.RpcError):  # the attacker replays a stolen, retired token
        refresh(first.refresh_token)
    with pytest.raises(grpc.RpcError):  # the session is gone for bob too
        refresh(second.refresh_token)
    s2 = login("bob", BOB_PW)
    revoke(s2.access_token, auth_pb2.REVOKE_SCOPE_TOKEN)
    s3 = login("bob", BOB_PW)
    revoke(s3.refresh_token, auth_pb2.REVOKE_SCOPE_SESSION)
    s4 = login("bob", BOB_PW)
    with pytest.raises(grpc.RpcError) as err:  # a leaked access token cannot log bob out
        revoke(s4.access_token, auth_pb2.REVOKE_SCOPE_USER)
    assert err.value.code() == grpc.StatusCode.PERMISSION_DENIED
    revoke(s4.refresh_token, auth_pb2.REVOKE_SCOPE_USER)  # bob logs out everywhere
    s5 = login("billing", client_secret)
    return [first.session_id, s2.session_id, s3.session_id, s4.session_id, s5.session_id]


def test_admin_commands_audit_to_stderr_by_default(authsvc_server: Harness) -> None:
    env = env_without_authsvc_settings(
        AUTHSVC_REDIS_URL=authsvc_server.settings.redis_url,
        AUTHSVC_DATA_DIR=str(authsvc_server.settings.data_dir),
    )
    out = cli(env, "user", "add", "carol", "--password-stdin", stdin="pw-Carol-1\npw-Carol-1\n")
    (line,) = [json.loads(x) for x in out.stderr.splitlines() if x.startswith("{")]
    assert line["event"] == "account_changed" and line["account"] == "carol"
    assert line["action"] == "user_created" and line["os_user"] == current_os_user()
    assert "pw-Carol-1" not in out.stderr + out.stdout


def test_an_unusable_audit_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="AUTHSVC_AUDIT_LOG"):
        load_settings(env={"AUTHSVC_AUDIT_LOG": str(tmp_path)})  # a directory
    with pytest.raises(ConfigError, match="AUTHSVC_AUDIT_LOG"):
        load_settings(env={"AUTHSVC_AUDIT_LOG": str(tmp_path / "missing" / "audit.log")})
    assert load_settings(env={"AUTHSVC_AUDIT_LOG": str(tmp_path / "a.log")}).audit_log
