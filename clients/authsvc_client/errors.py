"""The client library's errors, all under one root.

    AuthClientError
    ├── TokenUnavailable             no access token can be had; channels report UNAUTHENTICATED
    │   ├── ReauthenticationRequired     the session ended and there are no credentials
    │   ├── CredentialsRejected          Login refused the credentials or the scopes asked for
    │   ├── LoginThrottled               too many failed logins; try again after `retry_after`
    │   ├── AuthServiceUnavailable       authsvc could not be reached, even after retries
    │   ├── AuthServiceError             authsvc answered with an error the client cannot act on
    │   └── TokenStoreUnavailable        the shared token store could not be locked to refresh
    ├── RefreshTokenRejected         a transport's answer: the refresh token is unusable
    ├── InsecureTransportError       a bearer token would travel in clear text
    ├── TokenStoreError              the token file cannot be read or written
    └── TokenVerificationError       (resource servers) a presented access token is refused
        ├── InvalidToken                 bad, expired, revoked, or not for us; UNAUTHENTICATED
        │   └── BrokenRule                   it breaks a rule of `jwt_rules` (as authsvc would say)
        ├── InsufficientScope            valid, but lacks a required scope; PERMISSION_DENIED
        └── VerifierUnavailable          keys or Validate unreachable; UNAVAILABLE

Only the gRPC layer (`rpc`, the interceptors) converts gRPC status codes to and from these.
"""

from __future__ import annotations

import enum


class AuthClientError(Exception):
    """Raised for any failure of the authsvc client library."""


class TokenUnavailable(AuthClientError):
    """Raised when no usable access token can be obtained."""


class ReauthenticationRequired(TokenUnavailable):
    """Raised when the session has ended and there are no credentials to log in again."""


class CredentialsRejected(TokenUnavailable):
    """Raised when Login refuses the credentials, or the scopes or audience asked for."""


class LoginThrottled(TokenUnavailable):
    """Raised when authsvc refuses logins for a while after too many failures."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthServiceUnavailable(TokenUnavailable):
    """Raised when authsvc cannot be reached (UNAVAILABLE, DEADLINE_EXCEEDED) after retries."""


class AuthServiceError(TokenUnavailable):
    """Raised when authsvc answers with an error the client cannot act on."""


class TokenStoreUnavailable(TokenUnavailable):
    """Raised when the shared token store cannot be locked, so no refresh is tried.

    Refreshing without the lock could present a refresh token another process is
    presenting too. The manager keeps using a still-valid access token meanwhile.
    """


class RefreshTokenRejected(AuthClientError):
    """Raised by a transport when authsvc refuses a refresh token (expired, revoked, reused)."""


class InsecureTransportError(AuthClientError):
    """Raised when a bearer token would be sent in clear text to a non-loopback address."""


class TokenStoreError(AuthClientError):
    """Raised when the token file cannot be read, parsed or written."""


class TokenVerificationError(AuthClientError):
    """Raised when a resource server refuses a presented access token."""


class Invalid(enum.Enum):
    """Why an access token is refused: authsvc's Validate reasons, which verifiers share."""

    MALFORMED = "malformed"
    BAD_SIGNATURE = "bad_signature"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    REVOKED = "revoked"
    WRONG_TYPE = "wrong_type"
    WRONG_AUDIENCE = "wrong_audience"
    WRONG_ISSUER = "wrong_issuer"
    INSUFFICIENT_SCOPE = "insufficient_scope"
    UNKNOWN_KEY = "unknown_key"


class InvalidToken(TokenVerificationError):
    """Raised when the token is missing, malformed, badly signed, expired, revoked or not ours.

    `reason` is a short upper-case word: the name of an `Invalid` member, e.g. "EXPIRED",
    "REVOKED", "UNKNOWN_KEY", or "MISSING" when the call carries no token.
    """

    def __init__(self, message: str, reason: str = "MALFORMED") -> None:
        super().__init__(message)
        self.reason = reason


class BrokenRule(InvalidToken):
    """Raised when an access token breaks one of the rules every verifier applies (`jwt_rules`).

    `invalid` is the reason as authsvc's Validate gives it; `reason` is its name.
    """

    def __init__(self, invalid: Invalid, message: str) -> None:
        super().__init__(message, invalid.name)
        self.invalid = invalid


class InsufficientScope(TokenVerificationError):
    """Raised when a valid token lacks a scope the method requires."""


class VerifierUnavailable(TokenVerificationError):
    """Raised when the signing keys or the Validate RPC cannot be reached."""
