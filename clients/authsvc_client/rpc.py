"""Calls to the AuthService: the only module that speaks its messages and status codes.

`AuthsvcClient` (blocking) and `AsyncAuthsvcClient` (asyncio) serve both sides:
Login/Refresh for the token managers (they satisfy `AuthTransport` / `AsyncAuthTransport`),
GetJwks/Validate for the server interceptors. gRPC errors become library errors here, through
the one table `_ERRORS`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, TypeVar

import grpc
import grpc.aio
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc

from authsvc_client.errors import (
    AuthClientError,
    AuthServiceError,
    AuthServiceUnavailable,
    CredentialsRejected,
    InsufficientScope,
    InvalidToken,
    LoginThrottled,
    RefreshTokenRejected,
    VerifierUnavailable,
)
from authsvc_client.policy import DEFAULT_CALL_RETRY, CallRetry, backoff_delay
from authsvc_client.tokens import Credentials, Tokens

_Code = grpc.StatusCode

# (method, status code) -> error; "*" matches any method. Unlisted pairs: per-method default.
_ERRORS: dict[tuple[str, grpc.StatusCode], type[AuthClientError]] = {
    ("Login", _Code.UNAUTHENTICATED): CredentialsRejected,
    ("Login", _Code.PERMISSION_DENIED): CredentialsRejected,
    ("Login", _Code.INVALID_ARGUMENT): CredentialsRejected,
    ("Login", _Code.RESOURCE_EXHAUSTED): LoginThrottled,
    ("Refresh", _Code.UNAUTHENTICATED): RefreshTokenRejected,
    ("Refresh", _Code.INVALID_ARGUMENT): RefreshTokenRejected,
    ("*", _Code.UNAVAILABLE): AuthServiceUnavailable,
    ("*", _Code.DEADLINE_EXCEEDED): AuthServiceUnavailable,
}
_DEFAULT_ERRORS: dict[str, type[AuthClientError]] = {
    "Login": AuthServiceError,
    "Refresh": AuthServiceError,
    "GetJwks": VerifierUnavailable,
    "Validate": VerifierUnavailable,
}
# The server interceptors must see key or Validate trouble as theirs, not as a token problem.
_SERVER_SIDE = frozenset({"GetJwks", "Validate"})

DEFAULT_TIMEOUT = 10.0
# Well inside authsvc's refresh grace window (10 s by default): a Refresh whose answer was
# lost is retried while the server still hands back the same pair instead of calling the
# retry token reuse.
REFRESH_TIMEOUT = 4.0

ChannelT = TypeVar("ChannelT", grpc.Channel, grpc.aio.Channel)


def map_error(
    method: str,
    code: grpc.StatusCode | None,
    details: str | None,
    retry_after: float | None = None,
) -> AuthClientError:
    """The library error for a failed AuthService call (see the `_ERRORS` table)."""
    if method in _SERVER_SIDE:
        kind: type[AuthClientError] = _DEFAULT_ERRORS[method]
    else:
        key = code or _Code.UNKNOWN
        kind = _ERRORS.get((method, key)) or _ERRORS.get(("*", key)) or _DEFAULT_ERRORS[method]
    name = code.name if code is not None else "UNKNOWN"
    message = f"authsvc {method} failed: {name}: {details or 'no details'}"
    if kind is LoginThrottled:
        return LoginThrottled(message, retry_after)
    return kind(message)


@contextlib.contextmanager
def _mapped_errors(method: str) -> Iterator[None]:
    """Raise the library error (see `_ERRORS`) for a gRPC error of a call to `method`.

    A plain context manager, so the blocking and the asyncio client both use it around
    the one line that calls or awaits.
    """
    try:
        yield
    except grpc.RpcError as exc:
        if isinstance(exc, (grpc.aio.AioRpcError, grpc.Call)):
            code, details, trailers = exc.code(), exc.details(), exc.trailing_metadata()
        else:
            code, details, trailers = None, str(exc), None
        raise map_error(method, code, details, _retry_after(trailers)) from exc


_RETRIED = frozenset({"Validate", "GetJwks"})


class _Retry:
    """Whether a failed call is tried again (see `CallRetry`), as a context manager around
    the one line that calls or awaits: it swallows a retryable gRPC error and sets `delay`,
    so the blocking and the asyncio client share the flow and only sleep or await."""

    def __init__(self, method: str, policy: CallRetry) -> None:
        self._method = method
        self._policy = policy
        self.attempt = 0
        self.delay = 0.0

    def __enter__(self) -> _Retry:
        return self

    def __exit__(self, kind: object, exc: BaseException | None, tb: object) -> bool:
        if not isinstance(exc, grpc.RpcError) or self._method not in _RETRIED:
            return False
        self.attempt += 1
        code = exc.code() if isinstance(exc, (grpc.aio.AioRpcError, grpc.Call)) else None
        if code is not grpc.StatusCode.UNAVAILABLE or self.attempt >= self._policy.attempts:
            return False
        self.delay = backoff_delay(self.attempt, self._policy, random.random())  # noqa: S311
        return True


def _retry_after(trailers: Iterable[tuple[str, str | bytes]] | None) -> float | None:
    for key, value in trailers or ():
        if key == "retry-after":
            try:
                return float(value)
            except (TypeError, ValueError):
                return None
    return None


def _tokens(response: auth_pb2.LoginResponse | auth_pb2.RefreshResponse) -> Tokens:
    return Tokens(
        access_token=response.access_token,
        refresh_token=response.refresh_token,
        expires_in=float(response.expires_in),
        # 0 is a real answer (the session's absolute end is reached), not "no expiry".
        refresh_expires_in=float(response.refresh_expires_in),
        lifetime=float(response.expires_in),
        scopes=tuple(response.scopes),
        session_id=response.session_id,
    )


def _validate_request(
    access_token: str, audience: str, required_scopes: Sequence[str]
) -> auth_pb2.ValidateRequest:
    return auth_pb2.ValidateRequest(
        access_token=access_token, audience=audience, required_scopes=list(required_scopes)
    )


def _validate_outcome(response: auth_pb2.ValidateResponse) -> None:
    if response.valid:
        return
    reason = auth_pb2.InvalidReason.Name(response.reason)
    if response.reason == auth_pb2.INVALID_REASON_INSUFFICIENT_SCOPE:
        raise InsufficientScope(f"authsvc Validate: {reason}")
    raise InvalidToken(f"authsvc Validate: {reason}", reason.removeprefix("INVALID_REASON_"))


class _BaseAuthsvcClient(Generic[ChannelT]):
    """What `AuthsvcClient` and `AsyncAuthsvcClient` share: the settings and the requests.

    The two differ only in the line that calls (or awaits) the stub.
    """

    _stub: auth_pb2_grpc.AuthServiceStub

    def __init__(
        self,
        channel: ChannelT,
        *,
        audience: str = "",
        scopes: Sequence[str] = (),
        timeout: float = DEFAULT_TIMEOUT,
        retry: CallRetry = DEFAULT_CALL_RETRY,
    ) -> None:
        self._stub = auth_pb2_grpc.AuthServiceStub(channel)
        self._retry = retry
        self._audience = audience
        self._scopes = tuple(scopes)
        self._timeout = timeout
        self._refresh_timeout = min(timeout, REFRESH_TIMEOUT)

    def _login_request(self, credentials: Credentials) -> auth_pb2.LoginRequest:
        return auth_pb2.LoginRequest(
            username=credentials.principal,
            password=credentials.secret,
            audience=self._audience,
            scopes=list(self._scopes),
        )


class AuthsvcClient(_BaseAuthsvcClient[grpc.Channel]):
    """Blocking AuthService calls over a `grpc.Channel`; it is an `AuthTransport`.

    Args:
        channel: A channel to authsvc (not one carrying the bearer-token interceptor).
        audience: Audience asked for at Login; empty means authsvc's default.
        scopes: Scopes asked for at Login; empty means all the account may have.
        timeout: Deadline per call, in seconds (Refresh uses at most 4 s, well inside
            authsvc's grace window).
        retry: Retries of Validate and GetJwks after UNAVAILABLE (see `CallRetry`);
            `CallRetry(attempts=1)` turns them off.
    """

    def login(self, credentials: Credentials) -> Tokens:
        """Log in; see `AuthTransport.login`."""
        with _mapped_errors("Login"):
            response = self._stub.Login(self._login_request(credentials), timeout=self._timeout)
        return _tokens(response)

    def refresh(self, refresh_token: str) -> Tokens:
        """Rotate the refresh token; see `AuthTransport.refresh`."""
        request = auth_pb2.RefreshRequest(refresh_token=refresh_token)
        with _mapped_errors("Refresh"):
            response = self._stub.Refresh(request, timeout=self._refresh_timeout)
        return _tokens(response)

    def get_jwks(self) -> str:
        """The JWK Set (JSON) of the keys that sign access tokens.

        Raises:
            VerifierUnavailable: authsvc could not answer.
        """
        retry = _Retry("GetJwks", self._retry)
        while True:
            with _mapped_errors("GetJwks"), retry:
                response = self._stub.GetJwks(auth_pb2.GetJwksRequest(), timeout=self._timeout)
                return response.jwks_json
            time.sleep(retry.delay)

    def validate(self, access_token: str, audience: str, required_scopes: Sequence[str]) -> None:
        """Confirm with authsvc that `access_token` is valid and unrevoked.

        Raises:
            InvalidToken: authsvc says it is not valid (e.g. revoked).
            InsufficientScope: It lacks one of `required_scopes`.
            VerifierUnavailable: authsvc could not answer.
        """
        request = _validate_request(access_token, audience, required_scopes)
        retry = _Retry("Validate", self._retry)
        while True:
            with _mapped_errors("Validate"), retry:
                response = self._stub.Validate(request, timeout=self._timeout)
                return _validate_outcome(response)
            time.sleep(retry.delay)


class AsyncAuthsvcClient(_BaseAuthsvcClient[grpc.aio.Channel]):
    """AuthService calls over a `grpc.aio.Channel`; it is an `AsyncAuthTransport`.

    Arguments and errors as for `AuthsvcClient`.
    """

    _stub: auth_pb2_grpc.AuthServiceAsyncStub

    async def login(self, credentials: Credentials) -> Tokens:
        """Log in; see `AuthTransport.login`."""
        request = self._login_request(credentials)
        with _mapped_errors("Login"):
            response = await self._stub.Login(request, timeout=self._timeout)
        return _tokens(response)

    async def refresh(self, refresh_token: str) -> Tokens:
        """Rotate the refresh token; see `AuthTransport.refresh`."""
        request = auth_pb2.RefreshRequest(refresh_token=refresh_token)
        with _mapped_errors("Refresh"):
            response = await self._stub.Refresh(request, timeout=self._refresh_timeout)
        return _tokens(response)

    async def get_jwks(self) -> str:
        """The JWK Set (JSON) of the keys that sign access tokens; see `AuthsvcClient`."""
        retry = _Retry("GetJwks", self._retry)
        while True:
            with _mapped_errors("GetJwks"), retry:
                request = auth_pb2.GetJwksRequest()
                response = await self._stub.GetJwks(request, timeout=self._timeout)
                return response.jwks_json
            await asyncio.sleep(retry.delay)

    async def validate(
        self, access_token: str, audience: str, required_scopes: Sequence[str]
    ) -> None:
        """Confirm with authsvc that `access_token` is valid; see `AuthsvcClient.validate`."""
        request = _validate_request(access_token, audience, required_scopes)
        retry = _Retry("Validate", self._retry)
        while True:
            with _mapped_errors("Validate"), retry:
                response = await self._stub.Validate(request, timeout=self._timeout)
                return _validate_outcome(response)
            await asyncio.sleep(retry.delay)
