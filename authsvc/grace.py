"""Sealing the answer of a refresh for the retry grace window.

When a refresh rotates a token, the new pair is kept in Redis for the grace window so a
client whose response was lost can retry and get back exactly that pair. It is stored
encrypted (AES-256-GCM) under a key derived (HKDF-SHA256) from the *old* refresh token,
which Redis never holds (it stores only a SHA-256 digest), so Redis alone never yields a
usable token.
"""

from __future__ import annotations

import base64
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"authsvc refresh grace v1"
_SALT = b"authsvc-grace-salt-v1"


def _key(old_token: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(
        old_token.encode()
    )


def seal(old_token: str, answer: dict[str, Any]) -> str:
    """Encrypt `answer` so that only the holder of `old_token` can read it."""
    nonce = os.urandom(12)
    plaintext = json.dumps(answer, separators=(",", ":")).encode()
    sealed = AESGCM(_key(old_token)).encrypt(nonce, plaintext, _INFO)
    return base64.b64encode(nonce + sealed).decode("ascii")


def unseal(old_token: str, blob: str) -> dict[str, Any] | None:
    """Decrypt a sealed answer; None if it does not open with this token."""
    try:
        raw = base64.b64decode(blob)
        plaintext = AESGCM(_key(old_token)).decrypt(raw[:12], raw[12:], _INFO)
        value = json.loads(plaintext)
    except (InvalidTag, ValueError):
        return None
    return value if isinstance(value, dict) else None
