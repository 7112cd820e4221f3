"""The access-token codec on its own: verified and refused tokens are remembered only for
what the token is, never for the time it was checked at."""

from __future__ import annotations

import jwt
import pytest

from authsvc.keys import KeySet, StaticKeys, generate_private_key, keyset_of
from authsvc.tokens import AccessTokenCodec, Invalid, TokenInvalid

NOW = 1_800_000_000.0


@pytest.fixture
def codec() -> AccessTokenCodec:
    keys = keyset_of(generate_private_key("EdDSA"))
    return AccessTokenCodec(StaticKeys(keys), "authsvc", ["authsvc"], leeway=10)


def mint(codec: AccessTokenCodec, now: float) -> str:
    token, _ = codec.mint(subject="alice", session_id="s1", scopes=["read"], audience="authsvc",
                          client_id="", now=now, ttl=900)  # fmt: skip
    return token


def test_a_bad_signature_is_refused_every_time(codec: AccessTokenCodec) -> None:
    token = mint(codec, NOW)
    forged = token[:-6] + ("AAAAAA" if not token.endswith("AAAAAA") else "BBBBBB")
    for _ in range(3):
        with pytest.raises(TokenInvalid) as excinfo:
            codec.verify(forged, NOW)
        assert excinfo.value.reason is Invalid.BAD_SIGNATURE
    assert codec.verify(token, NOW).subject == "alice"  # the genuine one is unaffected


def test_time_refusals_are_never_remembered(codec: AccessTokenCodec) -> None:
    token = mint(codec, NOW + 3600)  # issued "in the future" as seen from NOW
    with pytest.raises(TokenInvalid) as excinfo:
        codec.verify(token, NOW)
    assert excinfo.value.reason is Invalid.NOT_YET_VALID
    assert codec.verify(token, NOW + 3600).subject == "alice"  # valid once its time comes
    with pytest.raises(TokenInvalid) as excinfo:
        codec.verify(token, NOW + 3600 + 911)
    assert excinfo.value.reason is Invalid.EXPIRED


class SwitchableKeys(StaticKeys):
    """A provider whose key set the test replaces (as a rotation does)."""

    def use(self, keys: KeySet) -> None:
        self._keys = keys


def test_a_key_set_change_forgets_what_the_caches_remember() -> None:
    old_key, new_key = generate_private_key("EdDSA"), generate_private_key("EdDSA")
    both = keyset_of(old_key, [new_key.public_key()])
    provider = SwitchableKeys(keyset_of(old_key))
    codec = AccessTokenCodec(provider, "authsvc", ["authsvc"], leeway=10)
    signer = AccessTokenCodec(StaticKeys(keyset_of(new_key)), "authsvc", ["authsvc"], leeway=10)
    old_token, new_token = mint(codec, NOW), mint(signer, NOW)
    assert codec.verify(old_token, NOW).subject == "alice"  # now in the verified cache
    with pytest.raises(TokenInvalid) as refused:
        codec.verify(new_token, NOW)  # now in the refused cache
    assert refused.value.reason is Invalid.UNKNOWN_KEY
    provider.use(both)  # the new key is published
    assert codec.verify(new_token, NOW).subject == "alice"
    provider.use(keyset_of(new_key))  # the old key is removed
    with pytest.raises(TokenInvalid) as removed:
        codec.verify(old_token, NOW)
    assert removed.value.reason is Invalid.UNKNOWN_KEY
    assert jwt.get_unverified_header(mint(codec, NOW))["kid"] == keyset_of(new_key).signing_kid
