"""Access tokens (RFC 9068 JWTs, signed with the active key) and opaque refresh tokens.

Verification applies the rules the client library's verifier applies too
(`authsvc_client.jwt_rules`, RFC 8725): the algorithm comes from our key (never from the
token), `kid` must name one of our keys, `typ` must be `at+jwt`, `crit` and key-carrying
headers (`jwk`, `jku`, `x5u`, `x5c`) are refused, and exp/iat/nbf/iss/sub/jti/sid/aud are
required. Time checks take `now` as an argument so tests inject a clock instead of sleeping.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import secrets
from collections.abc import Iterable
from typing import Any

import jwt
from authsvc_client import jwt_rules
from authsvc_client.cache import LruCache
from authsvc_client.errors import BrokenRule
from authsvc_client.errors import Invalid as Invalid
from authsvc_client.jwt_rules import ACCESS_TOKEN_TYPE, REFRESH_PREFIX
from authsvc_client.jwt_rules import MAX_TOKEN_LENGTH as MAX_TOKEN_LENGTH

from authsvc.keys import KeyProvider, KeySet


class TokenInvalid(Exception):
    """Raised by verification with the reason; an answer, not a server failure."""

    def __init__(self, reason: Invalid) -> None:
        super().__init__(reason.value)
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class AccessClaims:
    """The claims of a verified access token."""

    subject: str
    session_id: str
    token_id: str
    scopes: tuple[str, ...]
    audience: tuple[str, ...]
    issuer: str
    issued_at: int
    not_before: int
    expires_at: int
    client_id: str

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> AccessClaims:
        """Build from a decoded JWT payload (types already checked by the caller)."""
        aud = payload["aud"]
        return cls(
            subject=str(payload["sub"]),
            session_id=str(payload["sid"]),
            token_id=str(payload["jti"]),
            scopes=tuple(str(payload.get("scope", "")).split()),
            audience=(aud,) if isinstance(aud, str) else tuple(str(a) for a in aud),
            issuer=str(payload["iss"]),
            issued_at=int(payload["iat"]),
            not_before=int(payload["nbf"]),
            expires_at=int(payload["exp"]),
            client_id=str(payload.get("client_id", "")),
        )


class AccessTokenCodec:
    """Mints and verifies access tokens with the provider's current key set; caches
    verified tokens.

    The cache keeps a token's verified claims until it expires (bounded, LRU), so a busy
    caller's token is signature-checked once, not on every Validate. Both caches are
    emptied when the set of verification keys changes (a removed key's tokens must fail,
    a new key's tokens must not stay refused).
    """

    def __init__(
        self,
        keys: KeyProvider,
        issuer: str,
        audiences: Iterable[str],
        leeway: int,
        cache_size: int = 65536,
    ) -> None:
        self._provider = keys
        self._keys: KeySet | None = None
        self._issuer = issuer
        self._audiences = list(audiences)
        self._leeway = leeway
        self._cache: LruCache[str, AccessClaims] = LruCache(cache_size)
        # Tokens refused for what they are (not for the time): a caller repeating a bad
        # token costs a hash and a lookup, not a signature check each time. Keyed by digest
        # so memory stays small whatever the callers send.
        self._refused: LruCache[bytes, Invalid] = LruCache(cache_size)

    def _keyset(self) -> KeySet:
        """The provider's current key set (one object: signing and verifying agree)."""
        keys = self._provider.current
        if keys is not self._keys:
            if self._keys is None or keys.verification.keys() != self._keys.verification.keys():
                self._cache.clear()
                self._refused.clear()
            self._keys = keys
        return keys

    def mint(
        self,
        *,
        subject: str,
        session_id: str,
        scopes: Iterable[str],
        audience: str,
        client_id: str,
        now: float,
        ttl: int,
    ) -> tuple[str, AccessClaims]:
        """Sign a new access token; returns the JWT and its claims."""
        iat = int(now)
        payload = {
            "iss": self._issuer,
            "sub": subject,
            "aud": audience,
            "iat": iat,
            "nbf": iat,
            "exp": iat + ttl,
            "jti": secrets.token_urlsafe(16),
            "sid": session_id,
            "scope": " ".join(scopes),
            "client_id": client_id,
        }
        keys = self._keyset()
        token = jwt.encode(
            payload,
            keys.signing_key,
            algorithm=keys.signing_alg,
            headers={"kid": keys.signing_kid, "typ": ACCESS_TOKEN_TYPE},
        )
        return token, AccessClaims.from_payload(payload)

    def verify(self, token: str, now: float, audience: str = "") -> AccessClaims:
        """Verify signature and claims of `token` at time `now`.

        Raises:
            TokenInvalid: with the reason the token is not acceptable.
        """
        keys = self._keyset()
        claims = self._cache.get(token)
        if claims is None:
            digest = hashlib.sha256(token.encode()).digest()
            refused = self._refused.get(digest)
            if refused is not None:
                raise TokenInvalid(refused)
            try:
                claims = self._verify_signature_and_claims(token, keys)
            except TokenInvalid as exc:
                self._refused.put(digest, exc.reason)
                raise
            self._cache.put(token, claims)
        try:
            jwt_rules.check_times(
                expires_at=claims.expires_at,
                not_before=claims.not_before,
                issued_at=claims.issued_at,
                now=now,
                leeway=self._leeway,
            )
            if audience:
                jwt_rules.check_audience(claims.audience, audience)
        except BrokenRule as exc:
            if exc.invalid is Invalid.EXPIRED:
                self._cache.pop(token)
            raise TokenInvalid(exc.invalid) from None
        return claims

    def _verify_signature_and_claims(self, token: str, keys: KeySet) -> AccessClaims:
        try:
            header = jwt_rules.check_header(token)
            key = keys.verification.get(header.kid)
            if key is None:
                raise TokenInvalid(Invalid.UNKNOWN_KEY)
            payload = jwt_rules.decode(
                token,
                header,
                key.public_key,
                key_algorithm=key.alg,
                issuer=self._issuer,
                audience=self._audiences,
            )
        except BrokenRule as exc:
            raise TokenInvalid(exc.invalid) from None
        return AccessClaims.from_payload(payload)


@dataclasses.dataclass(frozen=True)
class RefreshToken:
    """A parsed refresh token: `rt1.<b64url(subject)>.<session id>.<secret>`.

    The subject and session id are routing data (they pick the Redis hash slot); only the
    256-bit secret part makes the token unguessable, and Redis stores only its hash.
    """

    subject: str
    session_id: str
    raw: str

    @property
    def digest(self) -> str:
        """SHA-256 of the whole token: what Redis stores."""
        return token_digest(self.raw)


def token_digest(raw: str) -> str:
    """Hex SHA-256 of a refresh token (the token has 256 bits of entropy: no slow hash)."""
    return hashlib.sha256(raw.encode()).hexdigest()


def new_session_id() -> str:
    """A random 128-bit session id."""
    return secrets.token_urlsafe(16)


def new_refresh_token(subject: str, session_id: str) -> RefreshToken:
    """A new refresh token for the session, with a 256-bit secret from `secrets`."""
    sub = base64.urlsafe_b64encode(subject.encode()).rstrip(b"=").decode()
    raw = f"{REFRESH_PREFIX}.{sub}.{session_id}.{secrets.token_urlsafe(32)}"
    return RefreshToken(subject, session_id, raw)


def parse_refresh_token(raw: str) -> RefreshToken | None:
    """Parse a refresh token; None when it is not one of ours in shape."""
    parts = raw.split(".")
    if len(parts) != 4 or parts[0] != REFRESH_PREFIX or len(raw) > 512:
        return None
    _, sub_b64, sid, secret = parts
    if len(secret) < 43 or not sid:
        return None
    try:
        subject = base64.urlsafe_b64decode(sub_b64 + "=" * (-len(sub_b64) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not subject:
        return None
    return RefreshToken(subject, sid, raw)


def looks_like_refresh_token(raw: str) -> bool:
    """True when `raw` has the refresh-token prefix (cheap, before parsing)."""
    return raw.startswith(REFRESH_PREFIX + ".")
