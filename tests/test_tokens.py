"""The access-token codec on its own: verified and refused tokens are remembered only for
what the token is, never for the time it was checked at."""

from __future__ import annotations

from pathlib import Path

import pytest

from authsvc.keys import load_or_create_keyset
from authsvc.tokens import AccessTokenCodec, Invalid, TokenInvalid

NOW = 1_800_000_000.0


@pytest.fixture
def codec(tmp_path: Path) -> AccessTokenCodec:
    keys = load_or_create_keyset(tmp_path, "EdDSA")
    return AccessTokenCodec(keys, "authsvc", ["authsvc"], leeway=10)


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
