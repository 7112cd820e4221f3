"""Server interceptor for blocking `grpc` servers of resource services.

Each call's bearer token is verified locally with authsvc's published keys (cached;
refetched, rate-limited, when an unknown `kid` appears), optionally confirmed with the
Validate RPC (which sees revocations at once), and checked against the method's policy.
The handler then finds the claims with `authsvc_client.current_claims()`. Failures abort
the call: UNAUTHENTICATED for a missing or invalid token, PERMISSION_DENIED for a missing
scope, UNAVAILABLE when keys or Validate cannot be reached (see `STATUS`).

Streams: the token is checked once, when the call starts. A stream may go on after the
token's `exp`; a handler that must not can compare `current_claims().expires_at` with the
time and end the stream, and clients then reopen it with a fresh token.
"""

from __future__ import annotations

import contextvars
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import grpc

from authsvc_client.context import CLAIMS
from authsvc_client.errors import (
    InsufficientScope,
    InvalidToken,
    TokenVerificationError,
    VerifierUnavailable,
)
from authsvc_client.guard import AUTHENTICATED, Guard, MethodPolicy
from authsvc_client.jwks import KeyCache, KeySource
from authsvc_client.verify import AccessClaims, AccessTokenVerifier

STATUS: dict[type[TokenVerificationError], grpc.StatusCode] = {
    InvalidToken: grpc.StatusCode.UNAUTHENTICATED,
    InsufficientScope: grpc.StatusCode.PERMISSION_DENIED,
    VerifierUnavailable: grpc.StatusCode.UNAVAILABLE,
}
"""The status each verification error aborts a call with."""

log = logging.getLogger(__name__)
UNVERIFIABLE = "the token could not be verified"


def status_of(error: TokenVerificationError) -> tuple[grpc.StatusCode, str]:
    """The status code and message that report `error` to the caller."""
    for kind, code in STATUS.items():
        if isinstance(error, kind):
            return code, str(error)
    return grpc.StatusCode.UNAUTHENTICATED, str(error)


class AuthsvcCalls(Protocol):
    """The authsvc calls the interceptor makes (`AuthsvcClient` has them)."""

    def get_jwks(self) -> str:
        """The JWK Set JSON."""
        ...

    def validate(self, access_token: str, audience: str, required_scopes: Any) -> None:
        """Raise unless authsvc confirms the token."""
        ...


_FACTORIES: dict[tuple[bool, bool], Callable[..., Any]] = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, False): grpc.stream_unary_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def rewrap(handler: Any, behavior: Callable[..., Any]) -> Any:
    """A method handler like `handler` (same kind and serialisers) running `behavior`."""
    factory = _FACTORIES[(bool(handler.request_streaming), bool(handler.response_streaming))]
    return factory(
        behavior,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


def behavior_of(handler: Any) -> Callable[..., Any]:
    """The function that implements a method handler."""
    behavior = (
        handler.stream_stream or handler.stream_unary or handler.unary_stream or handler.unary_unary
    )
    assert behavior is not None
    return behavior  # type: ignore[no-any-return]


def guard_and_key_cache(
    *,
    issuer: str,
    audience: str,
    policies: Mapping[str, MethodPolicy] | None,
    default_policy: MethodPolicy,
    leeway: float,
    wall_clock: Callable[[], float],
    clock: Callable[[], float],
    min_key_refetch_interval: float,
) -> tuple[Guard, KeyCache]:
    """The method guard and the key cache both server interceptors are built on."""
    verifier = AccessTokenVerifier(issuer=issuer, leeway=leeway, wall_clock=wall_clock)
    guard = Guard(verifier, audience=audience, policies=policies, default_policy=default_policy)
    cache = KeyCache(
        algorithms=verifier.algorithms, min_refetch_interval=min_key_refetch_interval, clock=clock
    )
    return guard, cache


class ServerAuthInterceptor(grpc.ServerInterceptor):
    """Protects a blocking gRPC server's methods with authsvc access tokens.

    Args:
        authsvc: Calls to authsvc, e.g. `AuthsvcClient(grpc.insecure_channel(target))`.
        issuer: authsvc's issuer (`iss`), matched exactly.
        audience: The audience this service requires by default.
        policies: Per method or service, see `Guard`; e.g. health checks as `PUBLIC`.
        default_policy: For methods not listed.
        confirm_with_authsvc: Also call Validate per request, so revocations count at once
            (costs a round trip; fails closed with UNAVAILABLE when authsvc is down).
        leeway: Seconds of clock skew tolerated on time claims.
        wall_clock: Seconds since the epoch, for `exp`/`nbf`/`iat`.
        clock: Monotonic seconds, for the key cache.
        min_key_refetch_interval: See `KeyCache`.
    """

    def __init__(
        self,
        authsvc: AuthsvcCalls,
        *,
        issuer: str,
        audience: str,
        policies: Mapping[str, MethodPolicy] | None = None,
        default_policy: MethodPolicy = AUTHENTICATED,
        confirm_with_authsvc: bool = False,
        leeway: float = 5.0,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        min_key_refetch_interval: float = 30.0,
    ) -> None:
        self._guard, cache = guard_and_key_cache(
            issuer=issuer,
            audience=audience,
            policies=policies,
            default_policy=default_policy,
            leeway=leeway,
            wall_clock=wall_clock,
            clock=clock,
            min_key_refetch_interval=min_key_refetch_interval,
        )
        self._keys = KeySource(authsvc.get_jwks, cache)
        self._authsvc = authsvc
        self._confirm = confirm_with_authsvc

    def authenticate(self, method: str, metadata: Any) -> AccessClaims | None:
        """The claims for a call to `method`, or None for a public method.

        Raises:
            TokenVerificationError: The call must be refused.
        """
        policy = self._guard.policy(method)
        if policy.public:
            return None
        token = self._guard.token(metadata)
        key = self._keys.key(self._guard.kid(token))
        claims = self._guard.check(token, key, policy)
        if self._confirm:
            self._authsvc.validate(
                token, self._guard.audience(policy), self._guard.required_scopes(policy)
            )
        return claims

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Wrap the method's handler so it runs only for an authorised caller."""
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if self._guard.policy(method).public:
            return handler
        behavior = behavior_of(handler)

        def admit(context: grpc.ServicerContext) -> contextvars.Context:
            try:
                claims = self.authenticate(method, context.invocation_metadata())
            except TokenVerificationError as exc:
                context.abort(*status_of(exc))
            except Exception:  # a bug must not reach the caller, nor its token the log
                log.error("token verification failed unexpectedly on %s", method)
                context.abort(grpc.StatusCode.UNAUTHENTICATED, UNVERIFIABLE)
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
