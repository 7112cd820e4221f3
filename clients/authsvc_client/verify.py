"""Local verification of authsvc access tokens (RFC 9068 JWTs), with an injected clock.

Verification is strict: the algorithm must be one of the allowed ones *and* the key's own;
`typ` must be `at+jwt`; a `crit` header is refused; `jwk`, `jku`, `x5u` and `x5c` headers are
never used (keys come only from authsvc's JWK Set); `exp`, `iat`, `iss`, `sub` and `jti`
are required; the issuer must match exactly and the audience must be among `aud`. Time
claims are checked here against the injected wall clock, with a small leeway.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import jwt
from jwt import PyJWK

from authsvc_client.errors import InsufficientScope, InvalidToken

_TYPES = ("at+jwt", "application/at+jwt")
_REQUIRED = ["exp", "iat", "iss", "sub", "jti"]
_VERIFIED_CACHE_SIZE = 10_000


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


def token_kid(token: str, algorithms: Collection[str]) -> str:
    """Check the unverified header of `token` and return its `kid`.

    Raises:
        InvalidToken: Not a JWT, a disallowed algorithm, the wrong `typ`, a `crit` header, or
            no `kid`.
    """
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as exc:
        raise InvalidToken(f"not a JWT: {exc}", "MALFORMED") from exc
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise InvalidToken("the token's algorithm is not allowed", "BAD_SIGNATURE")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in _TYPES:
        raise InvalidToken(f"typ {typ!r} is not an access token", "WRONG_TYPE")
    if "crit" in header:
        raise InvalidToken("critical header extensions are not supported", "MALFORMED")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidToken("the token names no key (kid)", "MALFORMED")
    return kid


def _int_claim(payload: Mapping[str, Any], name: str) -> int:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidToken(f"claim {name!r} is not an integer", "MALFORMED")
    return value


def validate_times(payload: Mapping[str, Any], now: float, leeway: float) -> None:
    """Check `exp`, `nbf` and `iat` against `now` (seconds since the epoch).

    Raises:
        InvalidToken: Expired (reason EXPIRED) or not yet valid (NOT_YET_VALID).
    """
    if _int_claim(payload, "exp") <= now - leeway:
        raise InvalidToken("the token has expired", "EXPIRED")
    if "nbf" in payload and _int_claim(payload, "nbf") > now + leeway:
        raise InvalidToken("the token is not valid yet (nbf)", "NOT_YET_VALID")
    if _int_claim(payload, "iat") > now + leeway:
        raise InvalidToken("the token was issued in the future (iat)", "NOT_YET_VALID")


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
        algorithms: Collection[str] = ("EdDSA", "ES256"),
        leeway: float = 5.0,
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
        self._verified: dict[tuple[str, str], tuple[PyJWK, Mapping[str, Any], AccessClaims]] = {}
        self._verified_lock = threading.Lock()  # blocking servers verify on many threads

    def kid(self, token: str) -> str:
        """The key id the token names, after checking its header; see `token_kid`."""
        return token_kid(token, self.algorithms)

    def verify(self, token: str, key: PyJWK, audience: str) -> AccessClaims:
        """Verify `token` with `key` for `audience` and return its claims.

        Raises:
            InvalidToken: With a reason such as BAD_SIGNATURE, EXPIRED, WRONG_AUDIENCE.
        """
        cached = self._verified.get((token, audience))
        if cached is not None and cached[0] is key:
            validate_times(cached[1], self._wall_clock(), self._leeway)
            return cached[2]
        payload = self._verify_signature_and_claims(token, key, audience)
        validate_times(payload, self._wall_clock(), self._leeway)
        claims = AccessClaims.from_payload(payload)
        with self._verified_lock:
            while len(self._verified) >= _VERIFIED_CACHE_SIZE:
                self._verified.pop(next(iter(self._verified)), None)
            self._verified[(token, audience)] = (key, payload, claims)
        return claims

    def _verify_signature_and_claims(
        self, token: str, key: PyJWK, audience: str
    ) -> Mapping[str, Any]:
        algorithm = key.algorithm_name
        if algorithm not in self.algorithms:
            raise InvalidToken(f"key algorithm {algorithm} is not allowed", "BAD_SIGNATURE")
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") != algorithm:
                raise InvalidToken("the token's algorithm does not match its key", "BAD_SIGNATURE")
            payload = jwt.decode(
                token,
                key.key,
                algorithms=[algorithm],
                audience=audience,
                issuer=self.issuer,
                options={
                    "require": _REQUIRED,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "strict_aud": False,
                },
            )
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("bad signature", "BAD_SIGNATURE") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken(f"not for audience {audience!r}", "WRONG_AUDIENCE") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken("not issued by authsvc", "WRONG_ISSUER") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise InvalidToken(str(exc), "BAD_SIGNATURE") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"malformed token: {exc}", "MALFORMED") from exc
        if payload.get("iss") != self.issuer:
            raise InvalidToken("not issued by authsvc", "WRONG_ISSUER")
        for name in ("sub", "jti"):
            if not isinstance(payload.get(name), str) or not payload[name]:
                raise InvalidToken(f"claim {name!r} is missing or empty", "MALFORMED")
        return payload
