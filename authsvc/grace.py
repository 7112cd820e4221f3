"""Sealing the answer of a refresh for the retry grace window.

When a refresh rotates a token, the new pair is kept in Redis for the grace window so a
client whose response was lost can retry and get back exactly that pair. It is stored
encrypted (AES-256-GCM) under a key derived (HKDF-SHA256) from the *old* refresh token,
which Redis never holds (it stores only a SHA-256 digest), so Redis alone never yields a
usable token.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_INFO = b"authsvc refresh grace v1"
_SALT = b"authsvc-grace-salt-v1"


@dataclasses.dataclass(frozen=True)
class GraceAnswer:
    """The pair a rotation returned, kept sealed so a retry gets exactly the same pair.

    Times are absolute (epoch seconds) so a retry reports `expires_in` counted down.
    """

    access_token: str
    refresh_token: str
    access_expires_at: int
    refresh_expires_at: int
    scopes: tuple[str, ...]

    def to_json(self) -> bytes:
        """The compact serialised form (short keys: it is stored once per rotation)."""
        doc = {
            "a": self.access_token,
            "r": self.refresh_token,
            "ae": self.access_expires_at,
            "re": self.refresh_expires_at,
            "s": list(self.scopes),
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> GraceAnswer | None:
        """Parse `to_json`'s output; None for anything else."""
        try:
            doc = json.loads(raw)
            answer = cls(
                access_token=doc["a"],
                refresh_token=doc["r"],
                access_expires_at=doc["ae"],
                refresh_expires_at=doc["re"],
                scopes=tuple(doc["s"]),
            )
        except (ValueError, TypeError, KeyError):
            return None
        fields_ok = (
            isinstance(answer.access_token, str)
            and isinstance(answer.refresh_token, str)
            and type(answer.access_expires_at) is int
            and type(answer.refresh_expires_at) is int
            and all(isinstance(s, str) for s in answer.scopes)
        )
        return answer if fields_ok else None


def _key(old_token: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=_INFO).derive(
        old_token.encode()
    )


def seal(old_token: str, answer: GraceAnswer) -> str:
    """Encrypt `answer` so that only the holder of `old_token` can read it."""
    nonce = os.urandom(12)
    sealed = AESGCM(_key(old_token)).encrypt(nonce, answer.to_json(), _INFO)
    return base64.b64encode(nonce + sealed).decode("ascii")


def unseal(old_token: str, blob: str) -> GraceAnswer | None:
    """Decrypt a sealed answer; None if it does not open with this token."""
    try:
        raw = base64.b64decode(blob, validate=True)
        plaintext = AESGCM(_key(old_token)).decrypt(raw[:12], raw[12:], _INFO)
    except (InvalidTag, ValueError, binascii.Error):
        return None
    return GraceAnswer.from_json(plaintext)
