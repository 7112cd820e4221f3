"""Validate: every reason a token is refused, answered as valid=false (never an error)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import grpc
import jwt
import pytest
from authsvc_api.v1 import auth_pb2
from cryptography.hazmat.primitives.asymmetric import ed25519

from tests.harness import Harness

PASSWORD = "correct horse battery staple"
R = auth_pb2


def validate(
    h: Harness, token: str, audience: str = "", scopes: tuple[str, ...] = ()
) -> auth_pb2.ValidateResponse:
    request = auth_pb2.ValidateRequest(
        access_token=token, audience=audience, required_scopes=scopes
    )
    return h.stub.Validate(request, timeout=10)


@pytest.fixture
def login(authsvc_server: Harness) -> auth_pb2.LoginResponse:
    authsvc_server.create_user("alice", PASSWORD)
    return authsvc_server.login("alice", PASSWORD)


def signing_key(h: Harness) -> tuple[Any, str]:
    keys = h.server.service.keys.current
    kid = json.loads(h.stub.GetJwks(auth_pb2.GetJwksRequest()).jwks_json)["keys"][0]["kid"]
    assert kid == keys.signing_kid
    return keys.signing_key, kid


def forge(
    h: Harness,
    login: auth_pb2.LoginResponse,
    headers: dict[str, Any] | None = None,
    key: Any = None,
    alg: str = "EdDSA",
    **changes: Any,
) -> str:
    """Re-sign the login's claims with `changes` using our key (or `key`)."""
    claims = jwt.decode(login.access_token, options={"verify_signature": False})
    claims.update(changes)
    for name, value in list(claims.items()):
        if value is None:
            del claims[name]
    our_key, kid = signing_key(h)
    hdr = {"kid": kid, "typ": "at+jwt"}
    hdr.update(headers or {})
    return jwt.encode(claims, key if key is not None else our_key, algorithm=alg, headers=hdr)


def test_valid_token_returns_its_claims(authsvc_server: Harness, login: Any) -> None:
    answer = validate(authsvc_server, login.access_token, audience="authsvc", scopes=("read",))
    assert answer.valid and answer.reason == R.INVALID_REASON_UNSPECIFIED
    c = answer.claims
    assert (c.subject, c.session_id, c.issuer) == ("alice", login.session_id, "authsvc")
    assert sorted(c.scopes) == ["read", "write"] and list(c.audience) == ["authsvc"]
    assert c.expires_at - c.issued_at == 900 and c.token_id


def test_validate_reasons(authsvc_server: Harness, login: Any) -> None:
    h = authsvc_server
    tampered = login.access_token[:-4] + (
        "AAAA" if not login.access_token.endswith("AAAA") else "BBBB"
    )
    other_key = ed25519.Ed25519PrivateKey.generate()
    cases = {
        "not a jwt": R.INVALID_REASON_MALFORMED,
        "a.b.c": R.INVALID_REASON_MALFORMED,
        tampered: R.INVALID_REASON_BAD_SIGNATURE,
        login.refresh_token: R.INVALID_REASON_WRONG_TYPE,
        forge(h, login, headers={"typ": "JWT"}): R.INVALID_REASON_WRONG_TYPE,
        forge(h, login, iss="https://evil.example"): R.INVALID_REASON_WRONG_ISSUER,
        forge(h, login, iss="authsv"): R.INVALID_REASON_WRONG_ISSUER,
        forge(h, login, aud="billing"): R.INVALID_REASON_WRONG_AUDIENCE,
        forge(h, login, jti=None): R.INVALID_REASON_MALFORMED,
        forge(h, login, sub=None): R.INVALID_REASON_MALFORMED,
        forge(h, login, exp="tomorrow"): R.INVALID_REASON_MALFORMED,
        forge(h, login, headers={"kid": "nope"}): R.INVALID_REASON_UNKNOWN_KEY,
        forge(h, login, key=other_key): R.INVALID_REASON_BAD_SIGNATURE,
        forge(h, login, headers={"crit": ["exp"]}): R.INVALID_REASON_MALFORMED,
        forge(h, login, headers={"jku": "https://evil.example/jwks"}): R.INVALID_REASON_MALFORMED,
        forge(h, login, headers={"jwk": {"kty": "OKP"}}): R.INVALID_REASON_MALFORMED,
    }
    for token, reason in cases.items():
        answer = validate(h, token)
        assert not answer.valid and answer.reason == reason, token[:40]
        assert not answer.HasField("claims")


def test_alg_none_and_hmac_confusion_are_refused(authsvc_server: Harness, login: Any) -> None:
    h = authsvc_server
    header, payload, _ = login.access_token.split(".")
    none_header = (
        base64.urlsafe_b64encode(
            json.dumps(
                {
                    "alg": "none",
                    "typ": "at+jwt",
                    "kid": jwt.get_unverified_header(login.access_token)["kid"],
                }
            ).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    assert validate(h, f"{none_header}.{payload}.").reason == R.INVALID_REASON_BAD_SIGNATURE
    jwks = h.stub.GetJwks(auth_pb2.GetJwksRequest()).jwks_json
    import hashlib
    import hmac

    signing_input = f"{header}.{payload}".encode()
    hs_header = (
        base64.urlsafe_b64encode(
            json.dumps(
                {"alg": "HS256", "typ": "at+jwt", "kid": json.loads(jwks)["keys"][0]["kid"]}
            ).encode()
        )
        .rstrip(b"=")
        .decode()
    )
    signing_input = f"{hs_header}.{payload}".encode()
    sig = hmac.new(jwks.encode(), signing_input, hashlib.sha256).digest()
    forged = f"{hs_header}.{payload}." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()
    assert validate(h, forged).reason == R.INVALID_REASON_BAD_SIGNATURE


def test_expiry_and_not_before_follow_the_clock_with_leeway(
    authsvc_server: Harness, login: Any
) -> None:
    h = authsvc_server
    h.clock.advance(900 + 9)  # within the 10 s leeway
    assert validate(h, login.access_token).valid
    h.clock.advance(2)
    assert validate(h, login.access_token).reason == R.INVALID_REASON_EXPIRED
    future = forge(
        h,
        login,
        nbf=int(time.time()) + 3600,
        iat=int(time.time()) + 3600,
        exp=int(time.time()) + 7200,
    )
    assert validate(h, future).reason == R.INVALID_REASON_NOT_YET_VALID


def test_audience_and_scope_requirements(authsvc_server: Harness, login: Any) -> None:
    h = authsvc_server
    assert validate(h, login.access_token, audience="billing").reason == (
        R.INVALID_REASON_WRONG_AUDIENCE
    )
    assert validate(h, login.access_token, scopes=("read", "admin")).reason == (
        R.INVALID_REASON_INSUFFICIENT_SCOPE
    )


def test_empty_or_oversized_token_is_invalid_argument(authsvc_server: Harness) -> None:
    for token in ("", "x" * 9000):
        with pytest.raises(grpc.RpcError) as excinfo:
            validate(authsvc_server, token)
        assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_oversized_message_is_refused_without_internal(authsvc_server: Harness) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        validate(authsvc_server, "x" * 200_000)
    assert excinfo.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_validate_can_require_an_audience(authsvc_server_factory: Any) -> None:
    h = authsvc_server_factory(validate_require_audience=True, audiences=("billing",))
    h.create_user("alice", PASSWORD)
    token = h.login("alice", PASSWORD, audience="billing").access_token
    with pytest.raises(grpc.RpcError) as excinfo:
        validate(h, token)
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "audience is required" in (excinfo.value.details() or "")
    assert validate(h, token, audience="billing").valid
    assert validate(h, token, audience="authsvc").reason == R.INVALID_REASON_WRONG_AUDIENCE


def test_validate_without_an_audience_is_answered_by_default(
    authsvc_server: Harness, login: Any
) -> None:
    assert validate(authsvc_server, login.access_token).valid
