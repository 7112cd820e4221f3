"""Server interceptor for `grpc.aio` servers of resource services.

The same checks, statuses and stream policy as `server_interceptor.ServerAuthInterceptor`;
handlers must be coroutines or async generators.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
import grpc.aio

from authsvc_client.context import CLAIMS
from authsvc_client.jwks import AsyncKeySource, KeyCache
from authsvc_client.server_base import BaseServerAuthInterceptor, behavior_of, refusal, rewrap
from authsvc_client.verify import AccessClaims


class AsyncAuthsvcCalls(Protocol):
    """The authsvc calls the interceptor makes (`AsyncAuthsvcClient` has them)."""

    async def get_jwks(self) -> str:
        """The JWK Set JSON."""
        ...

    async def validate(self, access_token: str, audience: str, required_scopes: Any) -> None:
        """Raise unless authsvc confirms the token."""
        ...


class AsyncServerAuthInterceptor(
    BaseServerAuthInterceptor[AsyncAuthsvcCalls, AsyncKeySource], grpc.aio.ServerInterceptor
):
    """Protects a `grpc.aio` server's methods with authsvc access tokens.

    Arguments are those of `BaseServerAuthInterceptor`, with `authsvc` an
    `AsyncAuthsvcClient`.
    """

    def _key_source(self, authsvc: AsyncAuthsvcCalls, cache: KeyCache) -> AsyncKeySource:
        return AsyncKeySource(authsvc.get_jwks, cache)

    async def authenticate(self, method: str, metadata: Any) -> AccessClaims | None:
        """The claims for a call to `method`, or None for a public method.

        Raises:
            TokenVerificationError: The call must be refused.
        """
        admission = self._admission(method, metadata)
        if admission is None:
            return None
        claims = self._check(admission, await self._keys.key(admission.kid))
        if self._confirm:
            await self._authsvc.validate(
                admission.token, admission.audience, admission.required_scopes
            )
        return claims

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        """Wrap the method's handler so it runs only for an authorised caller."""
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not self.protects(method):
            return handler
        behavior = behavior_of(handler)

        async def admit(context: grpc.aio.ServicerContext[Any, Any]) -> None:
            try:
                claims = await self.authenticate(method, context.invocation_metadata())
            except Exception as exc:  # `refusal` tells a refused token from a bug
                await context.abort(*refusal(method, exc))
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
