"""The verified claims of the current call, for request handlers behind the server interceptor."""

from __future__ import annotations

import contextvars

from authsvc_client.verify import AccessClaims

CLAIMS: contextvars.ContextVar[AccessClaims | None] = contextvars.ContextVar(
    "authsvc_client_claims", default=None
)


def current_claims() -> AccessClaims:
    """The claims of the access token of the call being handled.

    Raises:
        LookupError: Called outside a handler protected by the server interceptor (or in a
            method declared public).
    """
    claims = CLAIMS.get()
    if claims is None:
        raise LookupError("no authenticated call: the method is public or not intercepted")
    return claims


def claims_or_none() -> AccessClaims | None:
    """The claims of the current call, or None for public methods."""
    return CLAIMS.get()
