"""Client interceptor for `grpc.aio` channels: attaches the bearer token, retries once.

The same behaviour as `interceptors.AuthInterceptor` (see there, including what happens when
a stream outlives its token), for asyncio. Failures to obtain a token raise
`grpc.aio.AioRpcError` with status UNAUTHENTICATED whose `__cause__` is the
`TokenUnavailable`. For a retryable streamed response the interceptor reads the first
message itself (inside the call's own task) to learn whether the server refused the token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import grpc
import grpc.aio

from authsvc_client.bearer import with_bearer
from authsvc_client.errors import TokenUnavailable
from authsvc_client.replay import replayable

_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED

_Continuation = Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]]


class AsyncTokenSource(Protocol):
    """What the interceptor needs from a token manager (`AsyncTokenManager` has it)."""

    async def access_token(self) -> str:
        """A valid access token; raises `TokenUnavailable` when there is none."""
        ...

    async def token_after_rejection(self, rejected: str) -> str | None:
        """A new token after a server refused `rejected`, or None if retrying is pointless."""
        ...


def _authorized(details: grpc.aio.ClientCallDetails, token: str) -> grpc.aio.ClientCallDetails:
    metadata = grpc.aio.Metadata(*with_bearer(details.metadata, token))
    return grpc.aio.ClientCallDetails(
        details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
    )


def _unauthenticated(error: TokenUnavailable) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        code=_UNAUTHENTICATED,
        initial_metadata=grpc.aio.Metadata(),
        trailing_metadata=grpc.aio.Metadata(),
        details=f"authsvc_client: no access token for the call: {error}",
    )


async def _rest(call: Any, first: Any) -> AsyncIterator[Any]:
    # Once read() was used on a call, iterating it is an error; keep reading.
    if first is grpc.aio.EOF:
        return
    yield first
    while (message := await call.read()) is not grpc.aio.EOF:
        yield message


class AsyncAuthInterceptor:
    """Bearer-token interception for all four kinds of call on a `grpc.aio` channel.

    A `grpc.aio` channel files each interceptor object under one call kind only, so pass
    `interceptors()` (four adapters) when creating the channel, or use
    `authsvc_client.aio_secure_channel` / `aio_insecure_channel`, which also check that the
    channel is encrypted or local.

    Args:
        tokens: An `AsyncTokenManager` (or any `AsyncTokenSource`).
    """

    def __init__(self, tokens: AsyncTokenSource) -> None:
        self._tokens = tokens

    def interceptors(self) -> list[grpc.aio.ClientInterceptor]:
        """One adapter per call kind, for `grpc.aio.*_channel(interceptors=...)`."""
        return [
            _UnaryUnary(self),
            _UnaryStream(self),
            _StreamUnary(self),
            _StreamStream(self),
        ]

    async def intercept_unary_unary(
        self,
        continuation: _Continuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        """Send with a bearer token; retry once on UNAUTHENTICATED."""
        return await self._unary_response(continuation, client_call_details, request, True)

    async def intercept_stream_unary(
        self,
        continuation: _Continuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        """Send with a bearer token; retry once on UNAUTHENTICATED if the requests replay."""
        again = replayable(request_iterator)
        return await self._unary_response(
            continuation, client_call_details, request_iterator, again
        )

    async def intercept_unary_stream(
        self,
        continuation: _Continuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        """Open with a bearer token; reopen once if the first read is UNAUTHENTICATED."""
        return await self._stream_response(continuation, client_call_details, request, True)

    async def intercept_stream_stream(
        self,
        continuation: _Continuation,
        client_call_details: grpc.aio.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        """Open with a bearer token; reopen once on UNAUTHENTICATED if the requests replay."""
        again = replayable(request_iterator)
        return await self._stream_response(
            continuation, client_call_details, request_iterator, again
        )

    async def _token(self) -> str:
        try:
            return await self._tokens.access_token()
        except TokenUnavailable as exc:
            raise _unauthenticated(exc) from exc

    async def _retry_token(self, rejected: str) -> str | None:
        try:
            return await self._tokens.token_after_rejection(rejected)
        except TokenUnavailable as exc:
            raise _unauthenticated(exc) from exc

    async def _unary_response(
        self,
        continuation: _Continuation,
        details: grpc.aio.ClientCallDetails,
        request: Any,
        may_retry: bool,
    ) -> Any:
        token = await self._token()
        call = await continuation(_authorized(details, token), request)
        if not may_retry or await call.code() != _UNAUTHENTICATED:
            return call
        retry_token = await self._retry_token(token)
        if retry_token is None:
            return call
        return await continuation(_authorized(details, retry_token), request)

    async def _stream_response(
        self,
        continuation: _Continuation,
        details: grpc.aio.ClientCallDetails,
        request: Any,
        may_retry: bool,
    ) -> Any:
        token = await self._token()
        call = await continuation(_authorized(details, token), request)
        if not may_retry:
            return call
        try:
            first = await call.read()
        except grpc.aio.AioRpcError as exc:
            if exc.code() != _UNAUTHENTICATED:
                raise
            retry_token = await self._retry_token(token)
            if retry_token is None:
                raise
            return await continuation(_authorized(details, retry_token), request)
        return _rest(call, first)


class _UnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, auth: AsyncAuthInterceptor) -> None:
        self._auth = auth

    async def intercept_unary_unary(
        self, continuation: _Continuation, client_call_details: Any, request: Any
    ) -> Any:
        return await self._auth.intercept_unary_unary(continuation, client_call_details, request)


class _UnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, auth: AsyncAuthInterceptor) -> None:
        self._auth = auth

    async def intercept_unary_stream(
        self, continuation: _Continuation, client_call_details: Any, request: Any
    ) -> Any:
        return await self._auth.intercept_unary_stream(continuation, client_call_details, request)


class _StreamUnary(grpc.aio.StreamUnaryClientInterceptor):
    def __init__(self, auth: AsyncAuthInterceptor) -> None:
        self._auth = auth

    async def intercept_stream_unary(
        self, continuation: _Continuation, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._auth.intercept_stream_unary(
            continuation, client_call_details, request_iterator
        )


class _StreamStream(grpc.aio.StreamStreamClientInterceptor):
    def __init__(self, auth: AsyncAuthInterceptor) -> None:
        self._auth = auth

    async def intercept_stream_stream(
        self, continuation: _Continuation, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return await self._auth.intercept_stream_stream(
            continuation, client_call_details, request_iterator
        )
