"""Server interceptor for blocking `grpc` servers of resource services.

Each call's bearer token is verified locally with authsvc's published keys (cached;
refetched, rate-limited, when an unknown `kid` appears), optionally confirmed with the
Validate RPC (which sees revocations at once), and checked against the method's policy.
The handler then finds the claims with `authsvc_client.current_claims()`. Failures abort
the call: UNAUTHENTICATED for a missing or invalid token, PERMISSION_DENIED for a missing
scope, UNAVAILABLE when keys or Validate cannot be reached (see `server_base.STATUS`).

Streams: the token is checked once, when the call starts. A stream may go on after the
token's `exp`; a handler that must not can compare `current_claims().expires_at` with the
time and end the stream, and clients then reopen it with a fresh token.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import grpc

from authsvc_client.context import CLAIMS
from authsvc_client.jwks import KeyCache, KeySource
from authsvc_client.server_base import STATUS as STATUS
from authsvc_client.server_base import BaseServerAuthInterceptor, behavior_of, refusal, rewrap
from authsvc_client.server_base import status_of as status_of
from authsvc_client.verify import AccessClaims


class AuthsvcCalls(Protocol):
    """The authsvc calls the interceptor makes (`AuthsvcClient` has them)."""

    def get_jwks(self) -> str:
        """The JWK Set JSON."""
        ...

    def validate(self, access_token: str, audience: str, required_scopes: Any) -> None:
        """Raise unless authsvc confirms the token."""
        ...


class ServerAuthInterceptor(
    BaseServerAuthInterceptor[AuthsvcCalls, KeySource], grpc.ServerInterceptor
):
    """Protects a blocking gRPC server's methods with authsvc access tokens.

    Arguments are those of `BaseServerAuthInterceptor`, with `authsvc` e.g.
    `AuthsvcClient(grpc.insecure_channel(target))`.
    """

    def _key_source(self, authsvc: AuthsvcCalls, cache: KeyCache) -> KeySource:
        return KeySource(authsvc.get_jwks, cache)

    def authenticate(self, method: str, metadata: Any) -> AccessClaims | None:
        """The claims for a call to `method`, or None for a public method.

        Raises:
            TokenVerificationError: The call must be refused.
        """
        admission = self._admission(method, metadata)
        if admission is None:
            return None
        claims = self._check(admission, self._keys.key(admission.kid))
        if self._confirm:
            self._authsvc.validate(admission.token, admission.audience, admission.required_scopes)
        return claims

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Wrap the method's handler so it runs only for an authorised caller."""
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.protects(method):
            return handler
        behavior = behavior_of(handler)

        def admit(context: grpc.ServicerContext) -> contextvars.Context:
            try:
                claims = self.authenticate(method, context.invocation_metadata())
            except Exception as exc:  # `refusal` tells a refused token from a bug
                context.abort(*refusal(method, exc))
            # A copied context keeps the claims from leaking to the next call on this thread.
            scope = contextvars.copy_context()
            scope.run(CLAIMS.set, claims)
            return scope

        if handler.response_streaming:

            def streaming(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
                scope = admit(context)
                responses = iter(scope.run(behavior, request, context))
                while True:
                    try:
                        response = scope.run(next, responses)
                    except StopIteration:
                        return
                    yield response

            wrapped: Callable[..., Any] = streaming
        else:

            def wrapped(request: Any, context: grpc.ServicerContext) -> Any:
                return admit(context).run(behavior, request, context)

        return rewrap(handler, wrapped)
