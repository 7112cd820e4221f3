"""Signing keys: creation (0600, race-safe), ES256, verification-only keys for rotation."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import jwt
import pytest
from authsvc_api.v1 import auth_pb2

from authsvc.config import Settings
from authsvc.errors import ConfigError
from authsvc.keys import generate_private_key, keyset_of, load_file_keyset, private_key_pem
from authsvc.sealing import DEFAULT_FILE, load_kek
from tests.harness import HarnessFactory

PASSWORD = "correct horse battery staple"


def test_first_start_creates_one_key_encryption_key_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    key = generate_private_key("EdDSA")
    with ThreadPoolExecutor(max_workers=8) as pool:
        keks = list(pool.map(lambda _: load_kek(settings), range(8)))
    sealed = keks[0].seal(key, b"context")
    # Concurrent starters agree on one KEK: each opens what another sealed.
    assert all(kek.open(sealed, b"context") is not None for kek in keks)
    kek_file = tmp_path / DEFAULT_FILE
    assert kek_file.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in kek_file.parent.iterdir()] == [kek_file.name]


def test_a_seal_opens_only_with_its_kek_and_its_context(tmp_path: Path) -> None:
    ours = load_kek(Settings(data_dir=tmp_path / "a"))
    theirs = load_kek(Settings(data_dir=tmp_path / "b"))
    sealed = ours.seal(generate_private_key("ES256"), b"kid-1")
    assert ours.open(sealed, b"kid-1") is not None
    assert ours.open(sealed, b"kid-2") is None
    assert theirs.open(sealed, b"kid-1") is None
    assert ours.open("not base64!", b"kid-1") is None


def test_a_short_or_unreadable_kek_file_is_a_config_error(tmp_path: Path) -> None:
    short = tmp_path / "short"
    short.write_text("too short\n")
    with pytest.raises(ConfigError, match="AUTHSVC_KEY_ENCRYPTION_KEY_FILE"):
        load_kek(Settings(key_encryption_key_file=str(short)))
    with pytest.raises(ConfigError, match="cannot read"):
        load_kek(Settings(key_encryption_key_file=str(tmp_path / "missing")))


def test_jwks_is_a_public_rfc7517_set() -> None:
    ks = keyset_of(generate_private_key("ES256"))
    jwks = json.loads(ks.jwks_json())
    (key,) = jwks["keys"]
    assert key["kty"] == "EC" and key["crv"] == "P-256" and key["alg"] == "ES256"
    assert key["kid"] == ks.signing_kid and key["use"] == "sig"
    assert "d" not in key  # never the private part


def test_key_of_the_wrong_algorithm_is_a_config_error(tmp_path: Path) -> None:
    pem = tmp_path / "k.pem"
    pem.write_bytes(private_key_pem(generate_private_key("EdDSA")))
    with pytest.raises(ConfigError, match="ES256"):
        load_file_keyset("ES256", signing_key_file=str(pem))
    with pytest.raises(ConfigError, match="does not exist"):
        load_file_keyset("EdDSA", signing_key_file=str(tmp_path / "missing.pem"))


def test_es256_tokens_verify_with_the_published_jwks(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(signing_alg="ES256")
    h.create_user("alice", PASSWORD)
    token = h.login("alice", PASSWORD).access_token
    assert jwt.get_unverified_header(token)["alg"] == "ES256"
    jwks = jwt.PyJWKSet.from_json(h.stub.GetJwks(auth_pb2.GetJwksRequest()).jwks_json)
    key = jwks[jwt.get_unverified_header(token)["kid"]]
    assert jwt.decode(token, key.key, algorithms=["ES256"], audience="authsvc")["sub"] == "alice"
    assert h.stub.Validate(auth_pb2.ValidateRequest(access_token=token)).valid


def test_rotation_without_downtime(authsvc_server_factory: HarnessFactory, tmp_path: Path) -> None:
    old_pem, new_pem = tmp_path / "old.pem", tmp_path / "new.pem"
    old_pem.write_bytes(private_key_pem(generate_private_key("EdDSA")))
    new_pem.write_bytes(private_key_pem(generate_private_key("EdDSA")))
    # Step 1: every instance signs with the old key and already accepts the new one.
    a = authsvc_server_factory(signing_key_file=str(old_pem), verify_key_files=(str(new_pem),))
    a.create_user("alice", PASSWORD)
    old_token = a.login("alice", PASSWORD).access_token
    # Step 2: an instance switches to the new key; the old key stays for verification.
    b = authsvc_server_factory(
        shared_with=a, signing_key_file=str(new_pem), verify_key_files=(str(old_pem),)
    )
    new_token = b.login("alice", PASSWORD).access_token
    assert (
        jwt.get_unverified_header(new_token)["kid"] != jwt.get_unverified_header(old_token)["kid"]
    )
    for h in (a, b):
        for token in (old_token, new_token):
            assert h.stub.Validate(auth_pb2.ValidateRequest(access_token=token)).valid
        assert len(json.loads(h.stub.GetJwks(auth_pb2.GetJwksRequest()).jwks_json)["keys"]) == 2
    # An instance that never heard of the new key answers UNKNOWN_KEY, not an error.
    c = authsvc_server_factory(shared_with=a, signing_key_file=str(old_pem))
    answer = c.stub.Validate(auth_pb2.ValidateRequest(access_token=new_token))
    assert answer.reason == auth_pb2.INVALID_REASON_UNKNOWN_KEY
    with pytest.raises(grpc.RpcError):
        c.stub.Refresh(auth_pb2.RefreshRequest(refresh_token="x"))
