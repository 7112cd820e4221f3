"""Requests that do not decode: INVALID_ARGUMENT with one fixed message, never UNKNOWN.

grpc.aio deserializes a request before any handler runs; when the bytes are not a valid
protobuf message (or hold a string that is not valid UTF-8) the parser's exception escapes
to grpc itself, which answers UNKNOWN with the exception's text and logs a traceback per
request (a log-flooding lever). `DecodeGuard` is a server interceptor that gives every
handler, of any service, a deserializer that cannot raise: a message that does not parse
becomes a marker, and the wrapped handler answers it with the status the one error table
gives `InvalidInput`, without a traceback.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc

from authsvc import errors
from authsvc.rpc_status import Context, status_for

log = logging.getLogger(__name__)

MALFORMED_MESSAGE = "request is not a valid protobuf message"
_CODE = status_for(errors.InvalidInput(MALFORMED_MESSAGE))
_CACHE_SIZE = 1024

if TYPE_CHECKING:  # grpc's handler type is generic for type checkers only
    Handler = grpc.RpcMethodHandler[Any, Any]
    Continuation = Callable[[grpc.HandlerCallDetails], Awaitable[Handler | None]]


class _Undecodable:
    """Marks a request (or a message of a request stream) that did not parse."""


_UNDECODABLE = _Undecodable()


def _safe(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError, and whatever a parser may raise on hostile bytes
            return _UNDECODABLE

    return deserialize


async def _refuse(context: Context) -> None:
    log.debug("undecodable request refused", extra={"event": "undecodable_request"})
    await context.abort(_CODE, MALFORMED_MESSAGE)


async def _checked(requests: AsyncIterator[Any], context: Context) -> AsyncIterator[Any]:
    async for request in requests:
        if request is _UNDECODABLE:
            await _refuse(context)
        yield request


async def _responses(result: Any) -> AsyncIterator[Any]:
    """Yield what a streaming handler yields; await one that writes to the context."""
    if inspect.isasyncgen(result):
        async for response in result:
            yield response
    elif inspect.isawaitable(result):
        await result


def _guarded(handler: Handler) -> Handler:
    """`handler` with a deserializer that cannot raise and a behaviour that refuses the
    marker. Synchronous behaviours (run in a thread pool by grpc) are left as they are."""
    safe = _safe(handler.request_deserializer)
    if handler.unary_unary is not None and inspect.iscoroutinefunction(handler.unary_unary):
        uu: Callable[..., Any] = handler.unary_unary  # typed as sync; async here

        async def unary_unary(request: Any, context: Context) -> Any:
            if request is _UNDECODABLE:
                await _refuse(context)
            return await uu(request, context)

        return handler._replace(request_deserializer=safe, unary_unary=unary_unary)  # type: ignore[attr-defined,no-any-return]
    if handler.unary_stream is not None and _is_async(handler.unary_stream):
        us: Callable[..., Any] = handler.unary_stream  # typed as sync; async here

        async def unary_stream(request: Any, context: Context) -> AsyncIterator[Any]:
            if request is _UNDECODABLE:
                await _refuse(context)
            async for response in _responses(us(request, context)):
                yield response

        return handler._replace(request_deserializer=safe, unary_stream=unary_stream)  # type: ignore[attr-defined,no-any-return]
    if handler.stream_unary is not None and inspect.iscoroutinefunction(handler.stream_unary):
        su: Callable[..., Any] = handler.stream_unary  # typed as sync; async here

        async def stream_unary(requests: AsyncIterator[Any], context: Context) -> Any:
            return await su(_checked(requests, context), context)

        return handler._replace(request_deserializer=safe, stream_unary=stream_unary)  # type: ignore[attr-defined,no-any-return]
    if handler.stream_stream is not None and _is_async(handler.stream_stream):
        ss: Callable[..., Any] = handler.stream_stream  # typed as sync; async here

        async def stream_stream(
            requests: AsyncIterator[Any], context: Context
        ) -> AsyncIterator[Any]:
            async for response in _responses(ss(_checked(requests, context), context)):
                yield response

        return handler._replace(request_deserializer=safe, stream_stream=stream_stream)  # type: ignore[attr-defined,no-any-return]
    return handler


def _is_async(behaviour: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(behaviour) or inspect.isasyncgenfunction(behaviour)


class DecodeGuard(grpc.aio.ServerInterceptor):
    """Server interceptor: undecodable requests get INVALID_ARGUMENT, for every service.

    Put it last in the interceptor list (nearest the handlers): the handlers it wraps are
    then the server's registered ones, so each is wrapped once and remembered.
    """

    def __init__(self) -> None:
        self._wrapped: dict[Handler, Handler] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> Handler | None:
        """Return the handler of the call with a deserializer that cannot raise."""
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        guarded = self._wrapped.get(handler)
        if guarded is None:
            guarded = _guarded(handler)
            if len(self._wrapped) >= _CACHE_SIZE:  # only if handlers are made per call
                self._wrapped.clear()
            self._wrapped[handler] = guarded
        return guarded
