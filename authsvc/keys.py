"""Signing keys: generate, load, identify (RFC 7638 thumbprint) and publish as a JWK Set.

The active private key signs; every key in the set (the active one plus keys published
ahead of signing or kept after it) verifies, so a key can be rotated without downtime:
publish the new key first, then sign with it, then drop the old one once its tokens have
expired. Where the keys come from is a `KeyProvider`: `StaticKeys` for PEM files an
operator manages (`AUTHSVC_SIGNING_KEY_FILE`), `authsvc.keyring.KeyRing` for the key ring
shared through Redis that rotates itself.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

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
    """The signing key and every key accepted for verification, by kid.

    One immutable object: whoever holds it sees the signing key, the verification keys and
    the JWKS of the same moment.
    """

    signing_kid: str
    signing_alg: str
    signing_key: PrivateKey
    verification: dict[str, VerificationKey]
    _jwks: str = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keys = [vk.jwk for vk in self.verification.values()]
        jwks = json.dumps({"keys": keys}, separators=(",", ":"), sort_keys=True)
        object.__setattr__(self, "_jwks", jwks)  # built once: GetJwks answers it as is

    def jwks_json(self) -> str:
        """The public keys as an RFC 7517 JWK Set document."""
        return self._jwks


def keyset_of(signing_key: PrivateKey, others: Iterable[PublicKey] = ()) -> KeySet:
    """A key set signing with `signing_key` and also accepting `others` (signing key first)."""
    signing = verification_key(signing_key.public_key())
    verification = {signing.kid: signing}
    for public_key in others:
        vk = verification_key(public_key)
        verification.setdefault(vk.kid, vk)
    return KeySet(signing.kid, signing.alg, signing_key, verification)


@dataclasses.dataclass(frozen=True)
class NewKey:
    """A signing key just added: published at once, signing from `signs_from` (epoch s)."""

    kid: str
    alg: str
    signs_from: int


class KeyProvider(Protocol):
    """Where the key set comes from; `current` may change between calls (rotation)."""

    @property
    def current(self) -> KeySet:
        """The key set to use now.

        Raises:
            StoreUnavailable: the keys could not be loaded yet.
        """
        ...

    def due(self) -> bool:
        """Whether `refresh` has something to do (cheap: called on every request)."""
        ...

    async def refresh(self) -> None:
        """Bring `current` up to date (never raises StoreUnavailable: keeps the keys)."""
        ...

    async def rotate(self, by: str, source: str) -> NewKey:
        """Add a new signing key (see `authsvc.keyring`).

        Raises:
            ConfigError: this provider's keys are not rotated by authsvc.
            StoreUnavailable: Redis cannot be reached.
        """
        ...


class StaticKeys:
    """Keys from PEM files the operator manages: they change only with a restart."""

    def __init__(self, keys: KeySet) -> None:
        self._keys = keys

    @property
    def current(self) -> KeySet:
        """The key set loaded at start."""
        return self._keys

    def due(self) -> bool:
        """Never: files are read once."""
        return False

    async def refresh(self) -> None:
        """Nothing to do."""

    async def rotate(self, by: str, source: str) -> NewKey:
        """Refused: these keys are rotated by replacing the files."""
        raise ConfigError(
            "signing keys come from AUTHSVC_SIGNING_KEY_FILE: rotate them by replacing the "
            "files (see README 'Key rotation'), or unset it to use the Redis key ring"
        )


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


def verification_key(public_key: PublicKey) -> VerificationKey:
    """The public key with its algorithm, RFC 7638 kid and JWK."""
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


def load_private_key(path: Path) -> PrivateKey:
    """A PEM private key (Ed25519 or EC P-256) from a file.

    Raises:
        ConfigError: unreadable, not a key, or of another type.
    """
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
        return load_private_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError):
        raise ConfigError(f"cannot load verification key {path}") from None
    if not isinstance(key, ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey):
        raise ConfigError(f"verification key {path} must be Ed25519 or EC P-256")
    return key


def write_exclusive(path: Path, data: bytes) -> bool:
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


def load_file_keyset(
    alg: str, signing_key_file: str, verify_key_files: tuple[str, ...] = ()
) -> KeySet:
    """The signing key and the verification keys from PEM files.

    Raises:
        ConfigError: a key file is missing, unreadable, of the wrong type, or does not
            match `alg`.
    """
    path = Path(signing_key_file)
    if not path.exists():
        raise ConfigError(f"AUTHSVC_SIGNING_KEY_FILE {path} does not exist")
    keys = keyset_of(load_private_key(path), verification_public_keys(verify_key_files))
    if keys.signing_alg != alg:
        raise ConfigError(
            f"signing key {path} is for {keys.signing_alg} but AUTHSVC_SIGNING_ALG is {alg}"
        )
    return keys


def verification_public_keys(files: Iterable[str]) -> list[PublicKey]:
    """The public keys of `AUTHSVC_VERIFY_KEY_FILES` (PEM public or private keys).

    Raises:
        ConfigError: a file is unreadable or not an Ed25519 / EC P-256 key.
    """
    return [_load_public(Path(name)) for name in files]
