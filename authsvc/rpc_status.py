"""The single table mapping domain errors to gRPC status codes, applied at the edge."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from authsvc import errors

log = logging.getLogger(__name__)

# Only the errors an RPC can raise (AccountError itself is only a base class); anything
# else would be a bug and answers INTERNAL.
STATUS_OF: dict[type[errors.AuthsvcError], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.InvalidCredentials: grpc.StatusCode.UNAUTHENTICATED,
    errors.InvalidRefreshToken: grpc.StatusCode.UNAUTHENTICATED,
    errors.ScopeNotAllowed: grpc.StatusCode.PERMISSION_DENIED,
    errors.AudienceNotAllowed: grpc.StatusCode.PERMISSION_DENIED,
    errors.RetryLater: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.StoreUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.AccountExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    # A key operation the configuration rules out: RotateSigningKeys with file keys, or a
    # key ring none of whose keys opens with this instance's key-encryption key.
    errors.ConfigError: grpc.StatusCode.FAILED_PRECONDITION,
    errors.CallerUnauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.NotAuthorized: grpc.StatusCode.PERMISSION_DENIED,
}

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]
Handler = Callable[[Any, Req, Context], Awaitable[Resp]]


def status_for(exc: errors.AuthsvcError) -> grpc.StatusCode:
    """The status code of a domain error (most specific class wins)."""
    for cls in type(exc).__mro__:
        if cls in STATUS_OF:
            return STATUS_OF[cls]
    return grpc.StatusCode.INTERNAL


def maps_errors(handler: Handler[Req, Resp]) -> Handler[Req, Resp]:
    """Wrap an RPC handler: domain errors become their status; bugs become a logged
    INTERNAL with a generic message (never a stack trace to the caller)."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Req, context: Context) -> Resp:
        try:
            return await handler(self, request, context)
        except errors.AuthsvcError as exc:
            code = status_for(exc)
            if isinstance(exc, errors.RetryLater):
                context.set_trailing_metadata((("retry-after", str(exc.retry_after)),))
            if isinstance(exc, errors.StoreUnavailable):
                on_unavailable = getattr(self, "on_store_unavailable", None)
                if on_unavailable is not None:
                    on_unavailable()
            await context.abort(code, exc.public_message)
        except grpc.aio.AbortError:
            raise
        except Exception:
            log.exception("unexpected error in %s", handler.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        raise AssertionError("unreachable")  # abort() always raises

    return wrapper
