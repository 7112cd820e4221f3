"""The rules an authsvc access token (an RFC 9068 JWT) must follow, for every verifier.

authsvc's own verification (`authsvc.tokens.AccessTokenCodec`, behind Validate) and this
library's (`verify.AccessTokenVerifier`, behind the server interceptors) both apply these,
so a token is accepted, or refused for the same `Invalid` reason, wherever it is checked.
Following RFC 8725 and RFC 9068:

* the algorithm is one of `ALGORITHMS` and the key's own; the token never chooses it;
* `typ` is `at+jwt` (or `application/at+jwt`, in any case), and an authsvc refresh token
  is never taken for an access token;
* headers that extend processing or bring their own key (`FORBIDDEN_HEADERS`) are refused:
  keys come only from authsvc's key set, which the token names by `kid`;
* every claim of `REQUIRED_CLAIMS` is present; `iss` matches exactly; `aud` holds an
  accepted audience; `exp`, `nbf` and `iat` are integers in [0, `MAX_TIME`]; `sub`, `jti`
  and `sid` are non-empty strings; `scope` and `client_id`, if present, are strings; no
  string claim holds a lone surrogate (JSON's `"\ud800"`): a correctly signed token (a
  sibling instance, a leaked key) may hold anything JSON can, and such values fit no
  protobuf field, Redis key or log line;
* times are checked against a given `now`, with a leeway, by `check_times`, apart from
  the signature: a verifier may remember a verified token but checks its times every use.

Every check raises `BrokenRule` with its reason; none does I/O or reads a clock.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Iterable
from typing import Any

import jwt
from jwt.algorithms import AllowedPublicKeys
from jwt.types import Options

from authsvc_client.errors import BrokenRule, Invalid

ALGORITHMS = ("EdDSA", "ES256")
"""The signature algorithms accepted by default; nothing else is ever tried."""

ACCESS_TOKEN_TYPE = "at+jwt"
"""The `typ` of an access token (RFC 9068 section 2.1)."""

ACCEPTED_TYPES = frozenset({ACCESS_TOKEN_TYPE, "application/" + ACCESS_TOKEN_TYPE})
"""`typ` values accepted, compared in lower case (media types are case-insensitive)."""

FORBIDDEN_HEADERS = frozenset({"crit", "jwk", "jku", "x5u", "x5c"})
"""Header parameters refused: `crit` asks for extensions we do not implement; the others
bring or point to a key, and a token must never choose the key it is checked with."""

REQUIRED_CLAIMS = ("exp", "iat", "nbf", "iss", "sub", "jti", "sid", "aud")
"""Claims every access token carries."""

MAX_TOKEN_LENGTH = 8192
"""Longer tokens are refused before any parsing (authsvc's are a few hundred bytes)."""

MAX_TIME = 253402300799
"""The latest time claim accepted (9999-12-31T23:59:59Z): nothing downstream (int64
protobuf fields, `datetime`) has to hold a time no clock will show."""

REFRESH_PREFIX = "rt1"
"""authsvc's opaque refresh tokens start with this and a dot; they are never access tokens."""

_OPTIONS: Options = {
    "require": list(REQUIRED_CLAIMS),
    # Times are checked by check_times against the verifier's clock, not PyJWT's.
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "strict_aud": False,
}


@dataclasses.dataclass(frozen=True)
class Header:
    """The parts of a checked token header that verification needs."""

    alg: str
    kid: str


def check_header(token: str, algorithms: Collection[str] = ALGORITHMS) -> Header:
    """Check the unverified header of `token`; return its algorithm and key id.

    Raises:
        BrokenRule: Too long or not a JWT, a forbidden header parameter, or no `kid`
            (MALFORMED); an algorithm not in `algorithms` (BAD_SIGNATURE); a refresh token,
            or a `typ` that is not an access token's (WRONG_TYPE).
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise BrokenRule(Invalid.MALFORMED, "the token is too long")
    if token.startswith(REFRESH_PREFIX + "."):
        raise BrokenRule(Invalid.WRONG_TYPE, "a refresh token is not an access token")
    try:
        header = jwt.get_unverified_header(token)
    except (jwt.PyJWTError, ValueError, RecursionError) as exc:
        raise BrokenRule(Invalid.MALFORMED, f"not a JWT: {exc}") from exc
    forbidden = sorted(FORBIDDEN_HEADERS.intersection(header))
    if forbidden:
        raise BrokenRule(Invalid.MALFORMED, f"header parameter(s) not accepted: {forbidden}")
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in algorithms:
        raise BrokenRule(Invalid.BAD_SIGNATURE, "the token's algorithm is not allowed")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES:
        raise BrokenRule(Invalid.WRONG_TYPE, f"typ {typ!r} is not an access token's")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise BrokenRule(Invalid.MALFORMED, "the token names no key (kid)")
    return Header(alg, kid)


def decode(
    token: str,
    header: Header,
    key: AllowedPublicKeys,
    *,
    key_algorithm: str,
    issuer: str,
    audience: str | Iterable[str],
    algorithms: Collection[str] = ALGORITHMS,
) -> dict[str, Any]:
    """Check the signature of `token` with `key` and every claim but the times.

    Args:
        token: The token, whose header `check_header` returned `header`.
        header: Its checked header.
        key: The public key `header.kid` names.
        key_algorithm: The key's own algorithm: the only one tried.
        issuer: The exact `iss` required.
        audience: The audience, or audiences, of which `aud` must hold one.
        algorithms: Algorithms allowed at all.

    Returns:
        The payload, with every claim type checked.

    Raises:
        BrokenRule: BAD_SIGNATURE, WRONG_ISSUER, WRONG_AUDIENCE or MALFORMED.
    """
    if key_algorithm not in algorithms:
        raise BrokenRule(Invalid.BAD_SIGNATURE, f"key algorithm {key_algorithm} is not allowed")
    if header.alg != key_algorithm:
        raise BrokenRule(Invalid.BAD_SIGNATURE, "the token's algorithm does not match its key")
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=[key_algorithm],
            audience=audience,
            issuer=issuer,
            options=_OPTIONS,
        )
    except (jwt.InvalidSignatureError, jwt.InvalidAlgorithmError) as exc:
        raise BrokenRule(Invalid.BAD_SIGNATURE, "bad signature") from exc
    except jwt.InvalidIssuerError as exc:
        raise BrokenRule(Invalid.WRONG_ISSUER, "not issued by authsvc") from exc
    except jwt.InvalidAudienceError as exc:
        raise BrokenRule(Invalid.WRONG_AUDIENCE, f"not for audience {audience!r}") from exc
    except (jwt.PyJWTError, ValueError, RecursionError) as exc:
        raise BrokenRule(Invalid.MALFORMED, f"malformed token: {exc}") from exc
    # Exact, whatever PyJWT's own comparison (it once matched substrings, CVE-2024-53861).
    if payload.get("iss") != issuer:
        raise BrokenRule(Invalid.WRONG_ISSUER, "not issued by authsvc")
    _check_claim_types(payload)
    return payload


def _check_claim_types(payload: dict[str, Any]) -> None:
    for name in ("exp", "iat", "nbf"):
        value = payload[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise BrokenRule(Invalid.MALFORMED, f"claim {name!r} is not an integer")
        if not 0 <= value <= MAX_TIME:
            raise BrokenRule(Invalid.MALFORMED, f"claim {name!r} is out of range")
    for name in ("sub", "jti", "sid"):
        value = payload[name]
        if not isinstance(value, str) or not value:
            raise BrokenRule(Invalid.MALFORMED, f"claim {name!r} is not a non-empty string")
    for name in ("scope", "client_id"):
        if not isinstance(payload.get(name, ""), str):
            raise BrokenRule(Invalid.MALFORMED, f"claim {name!r} is not a string")
    aud = payload["aud"]
    texts = [payload[name] for name in ("iss", "sub", "jti", "sid")]
    texts += [payload.get("scope", ""), payload.get("client_id", "")]
    texts += [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []
    for text in texts:
        if isinstance(text, str) and not _is_unicode(text):
            raise BrokenRule(Invalid.MALFORMED, "a claim is not valid Unicode")


def _is_unicode(text: str) -> bool:
    """False when `text` holds a lone surrogate (it cannot be encoded as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_times(
    *, expires_at: int, not_before: int, issued_at: int, now: float, leeway: float
) -> None:
    """Check a verified token's times against `now` (seconds since the epoch).

    `leeway` seconds of clock skew are tolerated either way.

    Raises:
        BrokenRule: Not valid yet, or issued in the future (NOT_YET_VALID); expired (EXPIRED).
    """
    if not_before > now + leeway:
        raise BrokenRule(Invalid.NOT_YET_VALID, "the token is not valid yet (nbf)")
    if issued_at > now + leeway:
        raise BrokenRule(Invalid.NOT_YET_VALID, "the token was issued in the future (iat)")
    if expires_at <= now - leeway:
        raise BrokenRule(Invalid.EXPIRED, "the token has expired")


def check_audience(audiences: Collection[str], wanted: str) -> None:
    """Check that a verified token's `aud` holds `wanted`.

    Raises:
        BrokenRule: It does not (WRONG_AUDIENCE).
    """
    if wanted not in audiences:
        raise BrokenRule(Invalid.WRONG_AUDIENCE, f"not for audience {wanted!r}")
