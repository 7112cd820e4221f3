"""Local verification of authsvc access tokens (RFC 9068 JWTs), with an injected clock.

The rules are authsvc's own (`jwt_rules`), so a token is refused here for the reason
Validate would give: the algorithm must be an allowed one *and* the key's own; `typ` must
be `at+jwt`; `crit`, `jwk`, `jku`, `x5u` and `x5c` headers are refused (keys come only from
authsvc's JWK Set); `exp`, `iat`, `nbf`, `iss`, `sub`, `jti`, `sid` and `aud` are required;
the issuer must match exactly and the audience must be among `aud`. Time claims are checked
here against the injected wall clock, with a small leeway.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

from jwt import PyJWK

from authsvc_client import jwt_rules
from authsvc_client.cache import LruCache
from authsvc_client.errors import InsufficientScope

_VERIFIED_CACHE_SIZE = 10_000

DEFAULT_LEEWAY = 5.0
"""Seconds of clock skew tolerated on `exp`, `nbf` and `iat` unless a verifier is told."""


@dataclasses.dataclass(frozen=True)
class AccessClaims:
    """The verified claims of an access token, as handed to request handlers."""

    subject: str
    session_id: str
    scopes: frozenset[str]
    audience: tuple[str, ...]
    issuer: str
    token_id: str
    client_id: str
    issued_at: int
    expires_at: int
    raw: Mapping[str, Any] = dataclasses.field(repr=False, compare=False)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> AccessClaims:
        """Claims from a verified JWT payload."""
        audience = payload.get("aud", ())
        scope = payload.get("scope", "")
        return cls(
            subject=str(payload["sub"]),
            session_id=str(payload.get("sid", "")),
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            audience=(audience,) if isinstance(audience, str) else tuple(audience),
            issuer=str(payload["iss"]),
            token_id=str(payload["jti"]),
            client_id=str(payload.get("client_id", "")),
            issued_at=int(payload["iat"]),
            expires_at=int(payload["exp"]),
            raw=dict(payload),
        )


def require_scopes(claims: AccessClaims, required: Collection[str]) -> None:
    """Raise `InsufficientScope` unless `claims` carry every scope in `required`."""
    missing = sorted(set(required) - claims.scopes)
    if missing:
        raise InsufficientScope(f"the token lacks scope(s): {' '.join(missing)}")


class AccessTokenVerifier:
    """Verifies signature and claims of an access token with a given key.

    Args:
        issuer: The exact `iss` required (authsvc's issuer).
        algorithms: Allowed signature algorithms.
        leeway: Seconds of clock skew tolerated on `exp`, `nbf` and `iat`.
        wall_clock: Seconds since the epoch.
    """

    def __init__(
        self,
        *,
        issuer: str,
        algorithms: Collection[str] = jwt_rules.ALGORITHMS,
        leeway: float = DEFAULT_LEEWAY,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.algorithms = frozenset(algorithms)
        self._leeway = leeway
        self._wall_clock = wall_clock
        # (token, audience) -> (key it verified with, payload, claims). A service sees the
        # same token on many calls: its signature is checked once, its times every call.
        # An entry counts only for the very key object it was checked with, so a refetched
        # key set (rotation, a key withdrawn) verifies afresh.
        self._verified: LruCache[tuple[str, str], tuple[PyJWK, Mapping[str, Any], AccessClaims]] = (
            LruCache(_VERIFIED_CACHE_SIZE)
        )

    def kid(self, token: str) -> str:
        """The key id the token names, after checking its header.

        Raises:
            InvalidToken: The header breaks a rule (see `jwt_rules.check_header`).
        """
        return jwt_rules.check_header(token, self.algorithms).kid

    def verify(self, token: str, key: PyJWK, audience: str) -> AccessClaims:
        """Verify `token` with `key` for `audience` and return its claims.

        Raises:
            InvalidToken: With a reason such as BAD_SIGNATURE, EXPIRED, WRONG_AUDIENCE.
        """
        cached = self._verified.get((token, audience))
        if cached is not None and cached[0] is key:
            self._check_times(cached[1])
            return cached[2]
        header = jwt_rules.check_header(token, self.algorithms)
        payload = jwt_rules.decode(
            token,
            header,
            key.key,
            key_algorithm=key.algorithm_name,
            issuer=self.issuer,
            audience=audience,
            algorithms=self.algorithms,
        )
        self._check_times(payload)
        claims = AccessClaims.from_payload(payload)
        self._verified.put((token, audience), (key, payload, claims))
        return claims

    def _check_times(self, payload: Mapping[str, Any]) -> None:
        jwt_rules.check_times(
            expires_at=payload["exp"],
            not_before=payload["nbf"],
            issued_at=payload["iat"],
            now=self._wall_clock(),
            leeway=self._leeway,
        )
