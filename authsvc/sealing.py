"""The key-encryption key (KEK): seals the private keys of the Redis key ring.

Private signing keys are stored in Redis only as AES-256-GCM ciphertext under a key derived
(HKDF-SHA256) from the KEK, which lives in a file and never in Redis: Redis alone (a dump,
a replica, a stolen backup) never yields a signing key. The additional authenticated data
binds each ciphertext to its key record (kid, algorithm, times), so a record cannot be
edited or moved to another kid without the seal failing.

The KEK file holds at least 32 bytes of secret, e.g. `openssl rand -base64 32 > kek`
(surrounding whitespace is ignored). Without `AUTHSVC_KEY_ENCRYPTION_KEY_FILE` one is
generated under the data directory (mode 0600): right for the embedded setup, where server
and CLI share the data directory; instances on several hosts need the same file.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from authsvc.config import Settings, env_name
from authsvc.errors import ConfigError
from authsvc.keys import PrivateKey, write_exclusive

MIN_SECRET_BYTES = 32
DEFAULT_FILE = Path("keys") / "key-encryption.key"
_INFO = b"authsvc signing-key ring kek v1"
_NONCE_BYTES = 12


class KeyEncryptionKey:
    """Seals and opens private keys; holds only the derived AES key, not the file's text."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < MIN_SECRET_BYTES:
            raise ConfigError(
                f"{env_name('key_encryption_key_file')} must hold at least {MIN_SECRET_BYTES} "
                "bytes of secret (e.g. `openssl rand -base64 32`)"
            )
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)
        self._aead = AESGCM(derived)

    def seal(self, key: PrivateKey, context: bytes) -> str:
        """The private key encrypted and bound to `context` (base64)."""
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        nonce = os.urandom(_NONCE_BYTES)
        return base64.b64encode(nonce + self._aead.encrypt(nonce, der, context)).decode("ascii")

    def open(self, sealed: str, context: bytes) -> PrivateKey | None:
        """The private key; None if it was not sealed under this KEK with this context."""
        try:
            raw = base64.b64decode(sealed, validate=True)
            der = self._aead.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], context)
            key = serialization.load_der_private_key(der, password=None)
        except (InvalidTag, ValueError, TypeError, binascii.Error):
            return None
        if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            return None
        return key


def load_kek(settings: Settings) -> KeyEncryptionKey:
    """The KEK from `AUTHSVC_KEY_ENCRYPTION_KEY_FILE`, else the data directory's (created
    with mode 0600 on first use; concurrent starters agree on one).

    Raises:
        ConfigError: the file cannot be read or holds too little secret.
    """
    if settings.key_encryption_key_file:
        path = Path(settings.key_encryption_key_file)
    else:
        path = settings.data_dir / DEFAULT_FILE
        if not path.exists():
            write_exclusive(path, base64.b64encode(os.urandom(32)) + b"\n")
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the key-encryption key {path} "
            f"({env_name('key_encryption_key_file')}): {exc.strerror}"
        ) from None
    return KeyEncryptionKey(secret)
