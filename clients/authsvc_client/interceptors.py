"""Client interceptor for `grpc` (blocking) channels: attaches the bearer token, retries once.

Every call gets `authorization: Bearer <token>` from the token manager, refreshed first if it
is due. When the server answers UNAUTHENTICATED and the request can be sent again (a unary
request, or a `Replayable`/list/tuple request stream), the interceptor asks the manager for a
new token once and repeats the call once; any other status, and a second UNAUTHENTICATED, go
to the caller unchanged. If no token can be had at all the call fails with UNAUTHENTICATED
and a message naming the reason (the `TokenUnavailable` is its `__cause__`), so retry
policies that retry UNAVAILABLE do not loop on it.

Unary responses are checked for UNAUTHENTICATED when they complete, so with `.future()` the
first attempt is waited for inside the call. Streamed responses are checked lazily: the retry
happens on the first read, and only if no response message has been received.

Streams and token expiry: the token is sent once, in the headers that open the stream; a
stream carries no later token. A stream that outlives its token keeps running unless the
server closes it (this library's server interceptor checks the token when the stream opens
only). To move a long stream to a fresh token, end it and open a new one.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from authsvc_client.bearer import with_bearer
from authsvc_client.errors import TokenUnavailable
from authsvc_client.replay import replayable

_UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED

if TYPE_CHECKING:
    _Future = grpc.Future[Any]
else:  # grpc.Future is not subscriptable at run time
    _Future = grpc.Future


class TokenSource(Protocol):
    """What the interceptor needs from a token manager (`TokenManager` has it)."""

    def access_token(self) -> str:
        """A valid access token; raises `TokenUnavailable` when there is none."""
        ...

    def token_after_rejection(self, rejected: str) -> str | None:
        """A new token after a server refused `rejected`, or None if retrying is pointless."""
        ...


@dataclasses.dataclass
class _CallDetails(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


def _authorized(details: grpc.ClientCallDetails, token: str) -> _CallDetails:
    return _CallDetails(
        method=details.method,
        timeout=details.timeout,
        metadata=tuple(with_bearer(details.metadata, token)),
        credentials=details.credentials,
        wait_for_ready=details.wait_for_ready,
        compression=getattr(details, "compression", None),
    )


def _refused(outcome: Any) -> bool:
    return isinstance(outcome, grpc.Call) and outcome.code() == _UNAUTHENTICATED


class TokenUnavailableError(grpc.RpcError, grpc.Call, _Future):
    """A call that failed before it was sent because no access token could be had.

    It is a finished call with status UNAUTHENTICATED; `result()` and iteration raise it.
    `__cause__` is the `TokenUnavailable` (e.g. `ReauthenticationRequired`).
    """

    def __init__(self, error: TokenUnavailable) -> None:
        super().__init__(f"no access token for the call: {error}")
        self.__cause__ = error
        self._details = f"authsvc_client: no access token for the call: {error}"

    def code(self) -> grpc.StatusCode:
        """UNAUTHENTICATED."""
        return _UNAUTHENTICATED

    def details(self) -> str:
        """Why no token could be had."""
        return self._details

    def initial_metadata(self) -> tuple[()]:
        """None were received."""
        return ()

    def trailing_metadata(self) -> tuple[()]:
        """None were received."""
        return ()

    def is_active(self) -> bool:
        """The call is over."""
        return False

    def time_remaining(self) -> float:
        """There is no time left."""
        return 0.0

    def cancel(self) -> bool:
        """A finished call cannot be cancelled."""
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        """The call is over; the callback is not registered."""
        return False

    def cancelled(self) -> bool:
        """It was not cancelled."""
        return False

    def running(self) -> bool:
        """The call is over."""
        return False

    def done(self) -> bool:
        """The call is over."""
        return True

    def result(self, timeout: float | None = None) -> Any:
        """Raises this error."""
        raise self

    def exception(self, timeout: float | None = None) -> Exception:
        """This error."""
        return self

    def traceback(self, timeout: float | None = None) -> types.TracebackType | None:
        """The traceback of the cause."""
        return self.__cause__.__traceback__ if self.__cause__ is not None else None

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        """Calls `fn` at once: the call is over."""
        fn(self)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        raise self


class _RetryingResponses(grpc.Call, _Future):
    """A response stream that, if the first read fails UNAUTHENTICATED, reopens the call once."""

    def __init__(self, call: Any, reopen: Callable[[], Any] | None) -> None:
        self._call = call
        self._reopen = reopen
        self._received = False

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            message = next(self._call)
        except grpc.RpcError as exc:
            reopen, self._reopen = self._reopen, None
            if reopen is None or self._received or not _refused(exc):
                raise
            reopened = reopen()
            if reopened is None:
                raise
            self._call = reopened
            return next(self._call)
        self._received = True
        return message

    def initial_metadata(self) -> Any:
        return self._call.initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._call.trailing_metadata()

    def code(self) -> Any:
        return self._call.code()

    def details(self) -> Any:
        return self._call.details()

    def is_active(self) -> Any:
        return self._call.is_active()

    def time_remaining(self) -> Any:
        return self._call.time_remaining()

    def cancel(self) -> Any:
        self._reopen = None
        return self._call.cancel()

    def add_callback(self, callback: Callable[[], None]) -> Any:
        return self._call.add_callback(callback)

    def cancelled(self) -> Any:
        return self._call.cancelled()

    def running(self) -> Any:
        return self._call.running()

    def done(self) -> Any:
        return self._call.done()

    def result(self, timeout: float | None = None) -> Any:
        return self._call.result(timeout)

    def exception(self, timeout: float | None = None) -> Any:
        return self._call.exception(timeout)

    def traceback(self, timeout: float | None = None) -> Any:
        return self._call.traceback(timeout)

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self._call.add_done_callback(lambda _call: fn(self))

    def debug_error_string(self) -> Any:
        return self._call.debug_error_string()


class AuthInterceptor(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Bearer-token interceptor for all four kinds of call on a blocking channel.

    This object cannot see whether the channel is encrypted; prefer
    `authsvc_client.secure_channel` / `insecure_channel`, which check that.

    Args:
        tokens: A `TokenManager` (or any `TokenSource`).
    """

    def __init__(self, tokens: TokenSource) -> None:
        self._tokens = tokens

    def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        """Send with a bearer token; retry once on UNAUTHENTICATED."""
        return self._unary_response(continuation, client_call_details, lambda: request, True)

    def intercept_stream_unary(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        """Send with a bearer token; retry once on UNAUTHENTICATED if the requests replay."""
        again = replayable(request_iterator)
        requests = (lambda: iter(request_iterator)) if again else (lambda: request_iterator)
        return self._unary_response(continuation, client_call_details, requests, again)

    def intercept_unary_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request: Any,
    ) -> Any:
        """Open with a bearer token; reopen once if the first read is UNAUTHENTICATED."""
        return self._stream_response(continuation, client_call_details, lambda: request, True)

    def intercept_stream_stream(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        client_call_details: grpc.ClientCallDetails,
        request_iterator: Any,
    ) -> Any:
        """Open with a bearer token; reopen once on UNAUTHENTICATED if the requests replay."""
        again = replayable(request_iterator)
        requests = (lambda: iter(request_iterator)) if again else (lambda: request_iterator)
        return self._stream_response(continuation, client_call_details, requests, again)

    def _unary_response(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        details: grpc.ClientCallDetails,
        requests: Callable[[], Any],
        may_retry: bool,
    ) -> Any:
        try:
            token = self._tokens.access_token()
        except TokenUnavailable as exc:
            return TokenUnavailableError(exc)
        outcome = continuation(_authorized(details, token), requests())
        if not may_retry or not _refused(outcome):
            return outcome
        try:
            retry_token = self._tokens.token_after_rejection(token)
        except TokenUnavailable as exc:
            return TokenUnavailableError(exc)
        if retry_token is None:
            return outcome
        return continuation(_authorized(details, retry_token), requests())

    def _stream_response(
        self,
        continuation: Callable[[grpc.ClientCallDetails, Any], Any],
        details: grpc.ClientCallDetails,
        requests: Callable[[], Any],
        may_retry: bool,
    ) -> Any:
        try:
            token = self._tokens.access_token()
        except TokenUnavailable as exc:
            return TokenUnavailableError(exc)
        call = continuation(_authorized(details, token), requests())
        if not may_retry:
            return call

        def reopen() -> Any:
            try:
                retry_token = self._tokens.token_after_rejection(token)
            except TokenUnavailable as exc:
                return TokenUnavailableError(exc)
            if retry_token is None:
                return None
            return continuation(_authorized(details, retry_token), requests())

        return _RetryingResponses(call, reopen)
