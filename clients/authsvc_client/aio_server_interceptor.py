"""Server interceptor for `grpc.aio` servers of resource services.

The same checks, statuses and stream policy as `server_interceptor.ServerAuthInterceptor`;
handlers must be coroutines or async generators.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import grpc
import grpc.aio

from authsvc_client.context import CLAIMS
from authsvc_client.errors import TokenVerificationError
from authsvc_client.guard import AUTHENTICATED, MethodPolicy
from authsvc_client.jwks import AsyncKeySource
from authsvc_client.server_interceptor import (
    UNVERIFIABLE,
    behavior_of,
    guard_and_key_cache,
    rewrap,
    status_of,
)
from authsvc_client.verify import AccessClaims

log = logging.getLogger(__name__)


class AsyncAuthsvcCalls(Protocol):
    """The authsvc calls the interceptor makes (`AsyncAuthsvcClient` has them)."""

    async def get_jwks(self) -> str:
        """The JWK Set JSON."""
        ...

    async def validate(self, access_token: str, audience: str, required_scopes: Any) -> None:
        """Raise unless authsvc confirms the token."""
        ...


class AsyncServerAuthInterceptor(grpc.aio.ServerInterceptor):
    """Protects a `grpc.aio` server's methods with authsvc access tokens.

    Arguments are as for `ServerAuthInterceptor`, with `authsvc` an `AsyncAuthsvcClient`.
    """

    def __init__(
        self,
        authsvc: AsyncAuthsvcCalls,
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
        self._keys = AsyncKeySource(authsvc.get_jwks, cache)
        self._authsvc = authsvc
        self._confirm = confirm_with_authsvc

    async def authenticate(self, method: str, metadata: Any) -> AccessClaims | None:
        """The claims for a call to `method`, or None for a public method.

        Raises:
            TokenVerificationError: The call must be refused.
        """
        policy = self._guard.policy(method)
        if policy.public:
            return None
        token = self._guard.token(metadata)
        key = await self._keys.key(self._guard.kid(token))
        claims = self._guard.check(token, key, policy)
        if self._confirm:
            await self._authsvc.validate(
                token, self._guard.audience(policy), self._guard.required_scopes(policy)
            )
        return claims

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Wrap the method's handler so it runs only for an authorised caller."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        if self._guard.policy(method).public:
            return handler
        behavior = behavior_of(handler)

        async def admit(context: grpc.aio.ServicerContext[Any, Any]) -> None:
            try:
                claims = await self.authenticate(method, context.invocation_metadata())
            except TokenVerificationError as exc:
                await context.abort(*status_of(exc))
            except Exception:  # a bug must not reach the caller, nor its token the log
                log.error("token verification failed unexpectedly on %s", method)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNVERIFIABLE)
            # grpc.aio runs each call in a task of its own, so this stays with this call.
            CLAIMS.set(claims)

        wrapped: Callable[..., Any]
        if inspect.isasyncgenfunction(behavior):

            async def streaming(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                await admit(context)
                async for response in behavior(request, context):
                    yield response

            wrapped = streaming
        else:

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                await admit(context)
                return await behavior(request, context)

            wrapped = unary
        return rewrap(handler, wrapped)
