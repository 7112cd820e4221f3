"""Local verification against hostile tokens, signed with keys made here (no server needed).

The same verifier runs behind the server interceptors in test_server_interceptor_e2e.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest
from authsvc_client import AccessTokenVerifier, InsufficientScope, InvalidToken, KeyCache
from authsvc_client.errors import VerifierUnavailable
from authsvc_client.verify import AccessClaims, require_scopes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt import PyJWK
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

NOW = 1_800_000_000.0
ED_KEY = ed25519.Ed25519PrivateKey.generate()
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def jwk(private: Any, kid: str) -> PyJWK:
    if isinstance(private, ed25519.Ed25519PrivateKey):
        data = json.loads(OKPAlgorithm.to_jwk(private.public_key()))
    else:
        data = json.loads(ECAlgorithm.to_jwk(private.public_key()))
    data["kid"] = kid
    return PyJWK(data)


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": "authsvc", "sub": "alice", "aud": "orders", "exp": int(NOW) + 60,
        "iat": int(NOW), "nbf": int(NOW), "jti": "j1", "sid": "s1",
        "scope": "read write", "client_id": "cli",
    }  # fmt: skip
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(payload: dict[str, Any], key: Any = ED_KEY, alg: str = "EdDSA", **headers: Any) -> str:
    header: dict[str, Any] = {"typ": "at+jwt", "kid": "k1"}
    header.update(headers)
    return jwt.encode(payload, key, algorithm=alg, headers=header)


VERIFIER = AccessTokenVerifier(issuer="authsvc", wall_clock=lambda: NOW)


def verify(token: str, key: PyJWK | None = None) -> AccessClaims:
    VERIFIER.kid(token)
    return VERIFIER.verify(token, key or jwk(ED_KEY, "k1"), "orders")


def reason(token: str, key: PyJWK | None = None) -> str:
    with pytest.raises(InvalidToken) as info:
        verify(token, key)
    return info.value.reason


def test_accepts_eddsa_and_es256() -> None:
    got = verify(sign(claims()))
    assert got.subject == "alice" and got.scopes == {"read", "write"}
    assert got.audience == ("orders",) and got.session_id == "s1" and got.client_id == "cli"
    assert verify(sign(claims(), EC_KEY, "ES256"), jwk(EC_KEY, "k1")).subject == "alice"


def test_refuses_a_signature_by_another_key_with_the_same_kid() -> None:
    other = ed25519.Ed25519PrivateKey.generate()
    assert reason(sign(claims(), other)) == "BAD_SIGNATURE"


def test_refuses_algorithm_confusion() -> None:
    public_pem = ED_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    forged = jwt.api_jws.PyJWS().encode(
        json.dumps(claims()).encode(),
        public_pem[:32],  # HMAC "secret" taken from public material
        algorithm="HS256",
        headers={"typ": "at+jwt", "kid": "k1"},
    )
    assert reason(forged) == "BAD_SIGNATURE"
    # ES256 header with an EdDSA key: the key decides the algorithm, not the token.
    es = sign(claims(), EC_KEY, "ES256")
    with pytest.raises(InvalidToken):
        VERIFIER.verify(es, jwk(ED_KEY, "k1"), "orders")


def test_refuses_alg_none() -> None:
    headers = {"typ": "at+jwt", "kid": "k1"}
    unsigned = jwt.encode(claims(), "", algorithm="none", headers=headers)
    assert reason(unsigned) == "BAD_SIGNATURE"


@pytest.mark.parametrize("typ", [None, "JWT", "refresh+jwt"])
def test_refuses_tokens_that_are_not_access_tokens(typ: str | None) -> None:
    token = jwt.encode(claims(), ED_KEY, algorithm="EdDSA", headers={"kid": "k1", "typ": typ})
    assert reason(token) == "WRONG_TYPE"


def test_refuses_crit_headers() -> None:
    assert reason(sign(claims(), crit=["exp"], exp=1)) == "MALFORMED"


def test_never_uses_keys_named_by_the_token() -> None:
    attacker = ed25519.Ed25519PrivateKey.generate()
    embedded = json.loads(OKPAlgorithm.to_jwk(attacker.public_key()))
    token = sign(claims(), attacker, jwk=embedded, jku="https://evil.example/jwks.json")
    # Refused for carrying a key at all, as authsvc's Validate refuses it, not only because
    # the signature fails with ours (see test_jwt_rules.py).
    assert reason(token) == "MALFORMED"


@pytest.mark.parametrize("missing", ["exp", "iat", "nbf", "iss", "sub", "jti", "sid", "aud"])
def test_requires_claims(missing: str) -> None:
    assert reason(sign(claims(**{missing: None}))) == "MALFORMED"


def test_requires_the_exact_issuer_and_the_audience() -> None:
    assert reason(sign(claims(iss="authsvc2"))) == "WRONG_ISSUER"
    assert reason(sign(claims(iss="auth"))) == "WRONG_ISSUER"
    assert reason(sign(claims(aud="inventory"))) == "WRONG_AUDIENCE"
    assert verify(sign(claims(aud=["inventory", "orders"]))).subject == "alice"


def test_time_claims_use_the_injected_clock_with_a_small_leeway() -> None:
    assert verify(sign(claims(exp=int(NOW) - 4))).subject == "alice"  # 5 s leeway
    assert reason(sign(claims(exp=int(NOW) - 5))) == "EXPIRED"
    assert reason(sign(claims(nbf=int(NOW) + 60))) == "NOT_YET_VALID"
    assert reason(sign(claims(iat=int(NOW) + 60))) == "NOT_YET_VALID"
    real_time = AccessTokenVerifier(issuer="authsvc")  # NOW lies in the future
    with pytest.raises(InvalidToken):
        real_time.verify(sign(claims()), jwk(ED_KEY, "k1"), "orders")
    assert time.time() < NOW


def test_scopes() -> None:
    got = verify(sign(claims(scope="read")))
    require_scopes(got, ["read"])
    with pytest.raises(InsufficientScope):
        require_scopes(got, ["read", "write"])


def test_key_cache_keeps_only_allowed_signing_keys() -> None:
    now = [0.0]
    cache = KeyCache(clock=lambda: now[0], min_refetch_interval=30)
    with pytest.raises(VerifierUnavailable):
        cache.key("k1")
    rsa_like = {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}
    enc = json.loads(OKPAlgorithm.to_jwk(ED_KEY.public_key())) | {"kid": "enc", "use": "enc"}
    good = json.loads(OKPAlgorithm.to_jwk(ED_KEY.public_key())) | {"kid": "k1"}
    assert cache.needs_fetch("k1")
    cache.fetching()
    cache.update(json.dumps({"keys": [rsa_like, enc, good]}))
    assert cache.key("k1").algorithm_name == "EdDSA"
    for kid in ("hmac", "enc", "nope"):
        with pytest.raises(InvalidToken):
            cache.key(kid)
    assert not cache.needs_fetch("nope")  # just fetched
    now[0] = 31.0
    assert cache.needs_fetch("nope") and not cache.needs_fetch("k1")


def test_a_verified_token_is_remembered_but_its_times_are_checked_every_call() -> None:
    now = [NOW]
    verifier = AccessTokenVerifier(issuer="authsvc", wall_clock=lambda: now[0])
    key = jwk(ED_KEY, "k1")
    token = sign(claims())
    assert verifier.verify(token, key, "orders").subject == "alice"
    assert verifier.verify(token, key, "orders") is verifier.verify(token, key, "orders")
    now[0] = NOW + 120  # past exp + leeway: the remembered answer does not outlive it
    with pytest.raises(InvalidToken) as excinfo:
        verifier.verify(token, key, "orders")
    assert excinfo.value.reason == "EXPIRED"


def test_a_remembered_token_is_checked_afresh_with_another_key_or_audience() -> None:
    verifier = AccessTokenVerifier(issuer="authsvc", wall_clock=lambda: NOW)
    token = sign(claims())
    verifier.verify(token, jwk(ED_KEY, "k1"), "orders")
    other_key = jwk(ed25519.Ed25519PrivateKey.generate(), "k1")  # e.g. a refetched key set
    with pytest.raises(InvalidToken) as excinfo:
        verifier.verify(token, other_key, "orders")
    assert excinfo.value.reason == "BAD_SIGNATURE"
    with pytest.raises(InvalidToken) as excinfo:
        verifier.verify(token, jwk(ED_KEY, "k1"), "billing")
    assert excinfo.value.reason == "WRONG_AUDIENCE"


def test_a_non_string_alg_is_a_refused_token_not_a_crash() -> None:
    import base64

    def b64(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    token = f"{b64({'alg': ['EdDSA'], 'typ': 'at+jwt', 'kid': 'k1'})}.{b64(claims())}.c2ln"
    with pytest.raises(InvalidToken) as excinfo:
        VERIFIER.kid(token)
    assert excinfo.value.reason == "BAD_SIGNATURE"


def test_a_cancelled_key_fetch_does_not_lock_out_verification() -> None:
    import asyncio

    from authsvc_client.jwks import AsyncKeySource

    good = json.dumps(
        {"keys": [json.loads(OKPAlgorithm.to_jwk(ED_KEY.public_key())) | {"kid": "k1"}]}
    )

    async def scenario() -> str:
        release, started = asyncio.Event(), asyncio.Event()
        fetches = 0

        async def fetch() -> str:
            nonlocal fetches
            fetches += 1
            started.set()
            await release.wait()
            return good

        source = AsyncKeySource(fetch, KeyCache(clock=lambda: 0.0, min_refetch_interval=30))
        first = asyncio.ensure_future(source.key("k1"))
        await started.wait()  # the first call has started the fetch
        first.cancel()  # e.g. its client went away
        release.set()
        key = await source.key("k1")
        assert fetches == 1
        return str(key.key_id)

    assert asyncio.run(scenario()) == "k1"


def test_a_known_key_is_served_while_another_thread_refetches() -> None:
    import threading

    from authsvc_client.jwks import KeySource

    good = json.dumps(
        {"keys": [json.loads(OKPAlgorithm.to_jwk(ED_KEY.public_key())) | {"kid": "k1"}]}
    )
    now = [0.0]
    release, started = threading.Event(), threading.Event()

    def slow_fetch() -> str:  # authsvc answering slowly
        started.set()
        assert release.wait(timeout=10)
        return good

    cache = KeyCache(clock=lambda: now[0], min_refetch_interval=30, max_age=600)
    cache.fetching()
    cache.update(good)
    source = KeySource(slow_fetch, cache)
    now[0] = 601.0  # the key set is due for its periodic refetch
    refetcher = threading.Thread(target=source.key, args=("k1",))
    refetcher.start()
    assert started.wait(timeout=10)
    assert source.key("k1").key_id == "k1"  # answered while the refetch is in flight
    release.set()
    refetcher.join(timeout=10)
    assert not refetcher.is_alive()
