"""The one error hierarchy of authsvc.

    AuthsvcError
    ├── ConfigError            bad configuration value (at start), or a key operation the
    │                          configuration rules out
    ├── InvalidInput           empty, malformed or oversized request field
    ├── InvalidCredentials     wrong username/password (one generic message)
    ├── InvalidRefreshToken    unknown, expired, rotated, revoked or wrong-type refresh token
    ├── ScopeNotAllowed        scopes asked for that the account may not have
    ├── AudienceNotAllowed     an audience the account may not have tokens for
    ├── RetryLater             refused for now; carries retry_after seconds
    │   ├── LoginThrottled     too many failed logins (per name, per source or in all)
    │   └── LoginBusy          the password-check queue is full for this caller
    ├── StoreUnavailable       Redis cannot be reached or timed out
    ├── AccountError           admin operations on accounts and sessions (a base class)
    │   ├── AccountExists      the name is taken
    │   └── NotFound           no such account (or session of it)
    ├── CallerUnauthenticated  an operation needs credentials the call does not carry
    └── NotAuthorized          the caller is known but may not do this

The domain raises these; the gRPC layer maps each one an RPC can raise to a status code in
one table (`authsvc.rpc_status`). Messages are safe to show to callers: they never contain secrets.
"""

from __future__ import annotations


class AuthsvcError(Exception):
    """Root of every error authsvc raises on purpose."""

    message = "authentication service error"

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or self.message)

    @property
    def public_message(self) -> str:
        """The text safe to return to a caller."""
        return str(self)


class ConfigError(AuthsvcError):
    """Raised when a configuration value is missing or invalid; names the setting."""


class InvalidInput(AuthsvcError):
    """Raised when a request field is empty, malformed or too large."""


class InvalidCredentials(AuthsvcError):
    """Raised when a login fails, whether or not the account exists."""

    message = "invalid username or password"


class InvalidRefreshToken(AuthsvcError):
    """Raised when a refresh token cannot be used (unknown, expired, retired, revoked)."""

    message = "refresh token is invalid, expired or revoked"


class ScopeNotAllowed(AuthsvcError):
    """Raised when a login or refresh asks for scopes the account may not have."""


class AudienceNotAllowed(AuthsvcError):
    """Raised when a login asks for an audience the account may not have tokens for."""

    message = "the requested audience is not allowed for this account"


class RetryLater(AuthsvcError):
    """Raised when a request is refused for now; `retry_after` is whole seconds (>= 1)."""

    what = "the service is busy"

    def __init__(self, retry_after: float) -> None:
        self.retry_after = max(1, int(retry_after + 0.999))
        super().__init__(f"{self.what}; retry after {self.retry_after} seconds")


class LoginThrottled(RetryLater):
    """Raised when logins are throttled after repeated failures: of the account name, of
    the caller's source, or of all logins."""

    what = "too many failed login attempts"


class LoginBusy(RetryLater):
    """Raised when a login cannot get a place among the password checks in time."""

    what = "too many logins in progress"


class StoreUnavailable(AuthsvcError):
    """Raised when the token store (Redis) cannot be reached or does not answer in time."""

    message = "token store unavailable; retry later"


class AccountError(AuthsvcError):
    """Raised by account administration when the operation cannot be done."""


class AccountExists(AccountError):
    """Raised when an account is created under a name that is taken."""


class NotFound(AccountError):
    """Raised when an administered account, or a session of it, does not exist."""


class CallerUnauthenticated(AuthsvcError):
    """Raised when an operation needs an authenticated caller and the call proves none."""

    message = "this operation needs an administrator's access token or client certificate"


class NotAuthorized(AuthsvcError):
    """Raised when an authenticated caller may not perform the operation."""

    message = "the caller is not an administrator"
