"""The client library's errors, all under one root.

    AuthClientError
    ├── TokenUnavailable             no access token can be had; channels report UNAUTHENTICATED
    │   ├── ReauthenticationRequired     the session ended and there are no credentials
    │   ├── CredentialsRejected          Login refused the credentials or the scopes asked for
    │   ├── LoginThrottled               too many failed logins; try again after `retry_after`
    │   ├── AuthServiceUnavailable       authsvc could not be reached, even after retries
    │   └── AuthServiceError             authsvc answered with an error the client cannot act on
    ├── RefreshTokenRejected         a transport's answer: the refresh token is unusable
    ├── InsecureTransportError       a bearer token would travel in clear text
    ├── TokenStoreError              the token file cannot be read or written
    └── TokenVerificationError       (resource servers) a presented access token is refused
        ├── InvalidToken                 bad, expired, revoked, or not for us; UNAUTHENTICATED
        ├── InsufficientScope            valid, but lacks a required scope; PERMISSION_DENIED
        └── VerifierUnavailable          keys or Validate unreachable; UNAVAILABLE

Only the gRPC layer (`rpc`, the interceptors) converts gRPC status codes to and from these.
"""

from __future__ import annotations


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


class RefreshTokenRejected(AuthClientError):
    """Raised by a transport when authsvc refuses a refresh token (expired, revoked, reused)."""


class InsecureTransportError(AuthClientError):
    """Raised when a bearer token would be sent in clear text to a non-loopback address."""


class TokenStoreError(AuthClientError):
    """Raised when the token file cannot be read, parsed or written."""


class TokenVerificationError(AuthClientError):
    """Raised when a resource server refuses a presented access token."""


class InvalidToken(TokenVerificationError):
    """Raised when the token is missing, malformed, badly signed, expired, revoked or not ours.

    `reason` is a short upper-case word, e.g. "EXPIRED", "REVOKED", "UNKNOWN_KEY".
    """

    def __init__(self, message: str, reason: str = "MALFORMED") -> None:
        super().__init__(message)
        self.reason = reason


class InsufficientScope(TokenVerificationError):
    """Raised when a valid token lacks a scope the method requires."""


class VerifierUnavailable(TokenVerificationError):
    """Raised when the signing keys or the Validate RPC cannot be reached."""
