"""Signing keys: generate, load, identify (RFC 7638 thumbprint) and publish as a JWK Set.

The active private key signs; every key in the set (the active one plus configured
verification-only keys) verifies, so a key can be rotated without downtime: publish the
new key as a verification key on every instance first, then make it the signing key.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from jwt.algorithms import ECAlgorithm, OKPAlgorithm

from authsvc.errors import ConfigError

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey

_THUMBPRINT_MEMBERS = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y")}


@dataclasses.dataclass(frozen=True)
class VerificationKey:
    """A public key, its JOSE algorithm and key id."""

    kid: str
    alg: str
    public_key: PublicKey
    jwk: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class KeySet:
    """The signing key and every key accepted for verification, by kid."""

    signing_kid: str
    signing_alg: str
    signing_key: PrivateKey
    verification: dict[str, VerificationKey]

    def jwks_json(self) -> str:
        """The public keys as an RFC 7517 JWK Set document."""
        keys = [vk.jwk for vk in self.verification.values()]
        return json.dumps({"keys": keys}, separators=(",", ":"), sort_keys=True)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _public_jwk(public_key: PublicKey) -> tuple[str, dict[str, Any]]:
    """Return (alg, JWK dict with kid) for a public key."""
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        alg, jwk = "EdDSA", OKPAlgorithm.to_jwk(public_key, as_dict=True)
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise ConfigError("EC keys must use curve P-256 (ES256)")
        alg, jwk = "ES256", ECAlgorithm.to_jwk(public_key, as_dict=True)
    else:  # pragma: no cover - guarded by the loaders
        raise ConfigError("unsupported key type; use Ed25519 or EC P-256")
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    kid = _b64url(hashlib.sha256(canonical).digest())  # RFC 7638 JWK thumbprint
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    return alg, jwk


def _verification_key(public_key: PublicKey) -> VerificationKey:
    alg, jwk = _public_jwk(public_key)
    return VerificationKey(kid=jwk["kid"], alg=alg, public_key=public_key, jwk=jwk)


def generate_private_key(alg: str) -> PrivateKey:
    """A new private key for `alg` (EdDSA -> Ed25519, ES256 -> P-256)."""
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM encoding of a private key (unencrypted: protect the file with 0600)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _load_private(path: Path) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load signing key {path}: {type(exc).__name__}") from None
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"signing key {path} must be Ed25519 or EC P-256")
    return key


def _load_public(path: Path) -> PublicKey:
    data = path.read_bytes() if path.exists() else b""
    if b"PRIVATE KEY" in data:
        return _load_private(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ConfigError(f"cannot load verification key {path}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise ConfigError(f"verification key {path} must be Ed25519 or EC P-256")
    return key


def _write_exclusive(path: Path, data: bytes) -> bool:
    """Atomically create `path` with mode 0600; False if another process created it first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # fails if the file exists: first writer wins, no torn reads
        return True
    except FileExistsError:
        return False
    finally:
        tmp.unlink()


def load_or_create_keyset(
    data_dir: Path, alg: str, signing_key_file: str = "", verify_key_files: tuple[str, ...] = ()
) -> KeySet:
    """Load the signing key (creating one under `data_dir/keys` on first start) and the
    verification keys.

    Raises:
        ConfigError: a key file is unreadable, of the wrong type, or does not match `alg`.
    """
    if signing_key_file:
        path = Path(signing_key_file)
        if not path.exists():
            raise ConfigError(f"AUTHSVC_SIGNING_KEY_FILE {path} does not exist")
    else:
        path = data_dir / "keys" / f"signing-{alg.lower()}.pem"
        if not path.exists():
            _write_exclusive(path, private_key_pem(generate_private_key(alg)))
    signing_key = _load_private(path)
    signing = _verification_key(signing_key.public_key())
    if signing.alg != alg:
        raise ConfigError(
            f"signing key {path} is for {signing.alg} but AUTHSVC_SIGNING_ALG is {alg}"
        )
    verification = {signing.kid: signing}
    for extra in verify_key_files:
        vk = _verification_key(_load_public(Path(extra)))
        verification.setdefault(vk.kid, vk)
    return KeySet(signing.kid, signing.alg, signing_key, verification)
