"""One rule set, two verifiers: authsvc's (behind Validate) and the client library's (behind
the server interceptors) accept the same tokens and refuse the same tokens for the same reason.

Tokens are signed with a real authsvc key set (`authsvc.keys`, EdDSA and ES256) by PyJWT's
algorithms, with headers and claims crafted byte by byte; the client's verifier takes its
keys from that key set's published JWK Set, as the interceptors do.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from authsvc_client import AccessTokenVerifier, InvalidToken, KeyCache
from authsvc_client.errors import Invalid
from authsvc_client.jwt_rules import MAX_TOKEN_LENGTH, REQUIRED_CLAIMS
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import get_default_algorithms

from authsvc.keys import KeySet, StaticKeys, generate_private_key, keyset_of
from authsvc.tokens import AccessTokenCodec, TokenInvalid

NOW = 1_800_000_000
LEEWAY = 10
ISSUER = "authsvc"
AUDIENCE = "orders"

Refusal = Callable[[str], Invalid | None]
"""A verifier: the reason it refuses a token for, or None when it accepts it."""


@pytest.fixture(params=["EdDSA", "ES256"], scope="module")
def keys(request: pytest.FixtureRequest) -> KeySet:
    """A real authsvc key set, made as the key ring makes its keys."""
    return keyset_of(generate_private_key(request.param))


def authsvc_refusal(keys: KeySet) -> Refusal:
    codec = AccessTokenCodec(StaticKeys(keys), ISSUER, [AUDIENCE], leeway=LEEWAY)

    def refusal(token: str) -> Invalid | None:
        try:
            codec.verify(token, NOW, AUDIENCE)
        except TokenInvalid as exc:
            return exc.reason
        return None

    return refusal


def client_refusal(keys: KeySet) -> Refusal:
    verifier = AccessTokenVerifier(issuer=ISSUER, leeway=LEEWAY, wall_clock=lambda: NOW)
    cache = KeyCache(algorithms=verifier.algorithms, clock=lambda: 0.0)
    cache.fetching()
    cache.update(keys.jwks_json())  # what GetJwks serves

    def refusal(token: str) -> Invalid | None:
        try:  # the interceptors' steps: header, key by kid, signature and claims
            verifier.verify(token, cache.key(verifier.kid(token)), AUDIENCE)
        except InvalidToken as exc:
            return Invalid[exc.reason]
        return None

    return refusal


VERIFIERS = {"authsvc": authsvc_refusal, "client": client_refusal}


@pytest.fixture(params=sorted(VERIFIERS))
def refusal(request: pytest.FixtureRequest, keys: KeySet) -> Refusal:
    return VERIFIERS[request.param](keys)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signer(key: Any, alg: str) -> Callable[[bytes], bytes]:
    algorithm = get_default_algorithms()[alg]
    return lambda data: algorithm.sign(data, key)


def forge(
    keys: KeySet,
    header: dict[str, Any] | None = None,
    sign: Callable[[bytes], bytes] | None = None,
    **claims: Any,
) -> str:
    """A token signed with the key set's signing key (or `sign`); a None value drops a
    header parameter or claim."""
    fields: dict[str, Any] = {"alg": keys.signing_alg, "typ": "at+jwt", "kid": keys.signing_kid}
    fields.update(header or {})
    payload: dict[str, Any] = {
        "iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "exp": NOW + 60, "iat": NOW,
        "nbf": NOW, "jti": "j1", "sid": "s1", "scope": "read write", "client_id": "cli",
    }  # fmt: skip
    payload.update(claims)
    signing_input = ".".join(
        b64(json.dumps({k: v for k, v in part.items() if v is not None}).encode())
        for part in (fields, payload)
    ).encode()
    signature = (sign or signer(keys.signing_key, keys.signing_alg))(signing_input)
    return f"{signing_input.decode()}.{b64(signature)}"


def other_algorithm(keys: KeySet) -> tuple[str, Any]:
    alg = "ES256" if keys.signing_alg == "EdDSA" else "EdDSA"
    return alg, generate_private_key(alg)


def hmac_with_public_key(keys: KeySet) -> Callable[[bytes], bytes]:
    public = keys.verification[keys.signing_kid].public_key
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return lambda data: hmac.new(pem, data, hashlib.sha256).digest()


def another_key_of_the_same_kind(keys: KeySet) -> Any:
    if keys.signing_alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def without(claim: str) -> Callable[[KeySet], str]:
    return lambda k: forge(k, **{claim: None})


ATTACKER = ed25519.Ed25519PrivateKey.generate()
ATTACKER_JWK = json.loads(get_default_algorithms()["EdDSA"].to_jwk(ATTACKER.public_key()))

CASES: dict[str, tuple[Callable[[KeySet], str], Invalid]] = {
    # Not a JWT at all, or too big to parse.
    "garbage": (lambda k: "not.a.jwt", Invalid.MALFORMED),
    "too-long": (lambda k: forge(k, pad="x" * MAX_TOKEN_LENGTH), Invalid.MALFORMED),
    "refresh-token": (lambda k: "rt1.YWxpY2U.s1." + "x" * 43, Invalid.WRONG_TYPE),
    # Header parameters that extend processing or bring their own key (RFC 8725 3.10).
    "crit": (lambda k: forge(k, {"crit": ["exp"], "exp": NOW}), Invalid.MALFORMED),
    "jwk": (lambda k: forge(k, {"jwk": ATTACKER_JWK}), Invalid.MALFORMED),
    "jku": (lambda k: forge(k, {"jku": "https://evil.example/jwks"}), Invalid.MALFORMED),
    "x5u": (lambda k: forge(k, {"x5u": "https://evil.example/cert.pem"}), Invalid.MALFORMED),
    "x5c": (lambda k: forge(k, {"x5c": ["MIIBszCCAVmgAwIBAgIU"]}), Invalid.MALFORMED),
    # The type (RFC 9068 2.1).
    "typ-missing": (lambda k: forge(k, {"typ": None}), Invalid.WRONG_TYPE),
    "typ-JWT": (lambda k: forge(k, {"typ": "JWT"}), Invalid.WRONG_TYPE),
    "typ-refresh": (lambda k: forge(k, {"typ": "refresh+jwt"}), Invalid.WRONG_TYPE),
    "typ-not-a-string": (lambda k: forge(k, {"typ": ["at+jwt"]}), Invalid.WRONG_TYPE),
    # The algorithm is the key's own, never the token's choice (RFC 8725 3.1).
    "alg-none": (
        lambda k: forge(k, {"alg": "none"}, sign=lambda data: b""),
        Invalid.BAD_SIGNATURE,
    ),
    "alg-none-unknown-kid": (
        lambda k: forge(k, {"alg": "none", "kid": "nope"}, sign=lambda data: b""),
        Invalid.BAD_SIGNATURE,
    ),
    "alg-missing": (lambda k: forge(k, {"alg": None}), Invalid.BAD_SIGNATURE),
    "alg-hs256-with-the-public-key": (
        lambda k: forge(k, {"alg": "HS256"}, sign=hmac_with_public_key(k)),
        Invalid.BAD_SIGNATURE,
    ),
    "alg-other-than-the-keys": (
        lambda k: forge(
            k, {"alg": other_algorithm(k)[0]}, sign=signer(*reversed(other_algorithm(k)))
        ),
        Invalid.BAD_SIGNATURE,
    ),
    "signed-by-another-key": (
        lambda k: forge(k, sign=signer(another_key_of_the_same_kind(k), k.signing_alg)),
        Invalid.BAD_SIGNATURE,
    ),
    "tampered": (lambda k: forge(k)[:-8] + "AAAAAAAA", Invalid.BAD_SIGNATURE),
    # The key id.
    "kid-missing": (lambda k: forge(k, {"kid": None}), Invalid.MALFORMED),
    "kid-not-a-string": (lambda k: forge(k, {"kid": 7}), Invalid.MALFORMED),
    "kid-unknown": (lambda k: forge(k, {"kid": "nope"}), Invalid.UNKNOWN_KEY),
    # Claims: present, of the right type, ours.
    **{f"{name}-missing": (without(name), Invalid.MALFORMED) for name in REQUIRED_CLAIMS},
    "sub-empty": (lambda k: forge(k, sub=""), Invalid.MALFORMED),
    "jti-empty": (lambda k: forge(k, jti=""), Invalid.MALFORMED),
    "sid-empty": (lambda k: forge(k, sid=""), Invalid.MALFORMED),
    "sid-not-a-string": (lambda k: forge(k, sid=5), Invalid.MALFORMED),
    "exp-not-a-number": (lambda k: forge(k, exp="tomorrow"), Invalid.MALFORMED),
    "nbf-fractional": (lambda k: forge(k, nbf=NOW + 0.5), Invalid.MALFORMED),
    "iat-boolean": (lambda k: forge(k, iat=True), Invalid.MALFORMED),
    "scope-not-a-string": (lambda k: forge(k, scope=["read"]), Invalid.MALFORMED),
    "client_id-not-a-string": (lambda k: forge(k, client_id=7), Invalid.MALFORMED),
    "iss-other": (lambda k: forge(k, iss="https://evil.example"), Invalid.WRONG_ISSUER),
    "iss-prefix": (lambda k: forge(k, iss="authsv"), Invalid.WRONG_ISSUER),
    "aud-other": (lambda k: forge(k, aud="billing"), Invalid.WRONG_AUDIENCE),
    "aud-not-strings": (lambda k: forge(k, aud=[AUDIENCE, 5]), Invalid.WRONG_AUDIENCE),
    # Times, against the injected clock with the leeway.
    "expired": (lambda k: forge(k, exp=NOW - LEEWAY), Invalid.EXPIRED),
    "nbf-ahead": (lambda k: forge(k, nbf=NOW + LEEWAY + 1), Invalid.NOT_YET_VALID),
    "iat-ahead": (lambda k: forge(k, iat=NOW + LEEWAY + 1), Invalid.NOT_YET_VALID),
}


@pytest.mark.parametrize("case", CASES)
def test_every_verifier_refuses_for_the_same_reason(
    refusal: Refusal, keys: KeySet, case: str
) -> None:
    make, reason = CASES[case]
    assert refusal(make(keys)) is reason


ACCEPTED: dict[str, Callable[[KeySet], str]] = {
    "as-minted": lambda k: forge(k),
    "typ-media-type": lambda k: forge(k, {"typ": "application/at+jwt"}),
    "typ-upper-case": lambda k: forge(k, {"typ": "AT+JWT"}),
    "aud-among-several": lambda k: forge(k, aud=["billing", AUDIENCE]),
    "exp-within-leeway": lambda k: forge(k, exp=NOW - LEEWAY + 1),
    "nbf-within-leeway": lambda k: forge(k, nbf=NOW + LEEWAY, iat=NOW + LEEWAY),
    "no-scope-or-client": lambda k: forge(k, scope=None, client_id=None),
}


@pytest.mark.parametrize("case", ACCEPTED)
def test_every_verifier_accepts_the_same_tokens(refusal: Refusal, keys: KeySet, case: str) -> None:
    assert refusal(ACCEPTED[case](keys)) is None


def test_every_verifier_accepts_what_authsvc_mints(refusal: Refusal, keys: KeySet) -> None:
    codec = AccessTokenCodec(StaticKeys(keys), ISSUER, [AUDIENCE], leeway=LEEWAY)
    token, _ = codec.mint(subject="alice", session_id="s1", scopes=["read"], audience=AUDIENCE,
                          client_id="", now=NOW, ttl=900)  # fmt: skip
    assert refusal(token) is None
