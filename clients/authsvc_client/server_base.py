"""What the blocking and the asyncio server interceptors share: settings, checks, statuses.

`BaseServerAuthInterceptor` holds everything that does no I/O: the method guard, the key
cache, the checks before and after a key is fetched, and how a refusal is reported.
`ServerAuthInterceptor` and `AsyncServerAuthInterceptor` add only the lines that block or
are awaited (fetching keys, Validate, running the handler), as httpx's `Client` and
`AsyncClient` do over its `BaseClient`.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any, Generic, TypeVar

import grpc
from jwt import PyJWK

from authsvc_client.errors import (
    InsufficientScope,
    InvalidToken,
    TokenVerificationError,
    VerifierUnavailable,
)
from authsvc_client.guard import AUTHENTICATED, Guard, MethodPolicy
from authsvc_client.jwks import KeyCache
from authsvc_client.verify import DEFAULT_LEEWAY, AccessClaims, AccessTokenVerifier

STATUS: dict[type[TokenVerificationError], grpc.StatusCode] = {
    InvalidToken: grpc.StatusCode.UNAUTHENTICATED,
    InsufficientScope: grpc.StatusCode.PERMISSION_DENIED,
    VerifierUnavailable: grpc.StatusCode.UNAVAILABLE,
}
"""The status each verification error aborts a call with."""

UNVERIFIABLE = "the token could not be verified"
"""The message of a call refused because verification failed unexpectedly (a bug)."""

log = logging.getLogger(__name__)


def status_of(error: TokenVerificationError) -> tuple[grpc.StatusCode, str]:
    """The status code and message that report `error` to the caller."""
    for kind, code in STATUS.items():
        if isinstance(error, kind):
            return code, str(error)
    return grpc.StatusCode.UNAUTHENTICATED, str(error)


def refusal(method: str, error: Exception) -> tuple[grpc.StatusCode, str]:
    """The status code and message of a call to `method` whose verification raised `error`.

    Anything but a `TokenVerificationError` is a bug: it is logged without its text (which
    may hold the token) and the caller learns only that the token could not be verified.
    """
    if isinstance(error, TokenVerificationError):
        return status_of(error)
    log.error("token verification failed unexpectedly on %s", method)
    return grpc.StatusCode.UNAUTHENTICATED, UNVERIFIABLE


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


@dataclasses.dataclass(frozen=True)
class Admission:
    """A call's token after the checks that need no key, and what the method demands.

    Attributes:
        token: The bearer token.
        kid: The key it names (its header has been checked).
        policy: The method's policy.
        audience: The audience the policy requires.
        required_scopes: The scopes the policy requires, for Validate.
    """

    token: str = dataclasses.field(repr=False)
    kid: str
    policy: MethodPolicy
    audience: str
    required_scopes: Collection[str]


Calls = TypeVar("Calls")
Keys = TypeVar("Keys")


class BaseServerAuthInterceptor(Generic[Calls, Keys]):
    """Settings and I/O-free steps of a server interceptor; subclasses add the I/O.

    A subclass picks its key source (`_key_source`) and drives one call as: `_admission`,
    fetch the key it names, `_check`, then Validate when confirming with authsvc.

    Args:
        authsvc: Calls to authsvc (`AuthsvcClient` or `AsyncAuthsvcClient`, as the subclass
            needs).
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
        authsvc: Calls,
        *,
        issuer: str,
        audience: str,
        policies: Mapping[str, MethodPolicy] | None = None,
        default_policy: MethodPolicy = AUTHENTICATED,
        confirm_with_authsvc: bool = False,
        leeway: float = DEFAULT_LEEWAY,
        wall_clock: Callable[[], float] = time.time,
        clock: Callable[[], float] = time.monotonic,
        min_key_refetch_interval: float = 30.0,
    ) -> None:
        verifier = AccessTokenVerifier(issuer=issuer, leeway=leeway, wall_clock=wall_clock)
        self._guard = Guard(
            verifier, audience=audience, policies=policies, default_policy=default_policy
        )
        cache = KeyCache(
            algorithms=verifier.algorithms,
            min_refetch_interval=min_key_refetch_interval,
            clock=clock,
        )
        self._keys: Keys = self._key_source(authsvc, cache)
        self._authsvc = authsvc
        self._confirm = confirm_with_authsvc

    def _key_source(self, authsvc: Calls, cache: KeyCache) -> Keys:
        """The source of signing keys, fetching with `authsvc` into `cache`."""
        raise NotImplementedError

    def protects(self, method: str) -> bool:
        """Whether calls to `method` need a token."""
        return not self._guard.policy(method).public

    def _admission(self, method: str, metadata: Any) -> Admission | None:
        """The checks of a call that come before fetching a key; None for a public method.

        Raises:
            InvalidToken: No bearer token, or one whose header is refused.
        """
        policy = self._guard.policy(method)
        if policy.public:
            return None
        token = self._guard.token(metadata)
        return Admission(
            token=token,
            kid=self._guard.kid(token),
            policy=policy,
            audience=self._guard.audience(policy),
            required_scopes=self._guard.required_scopes(policy),
        )

    def _check(self, admission: Admission, key: PyJWK) -> AccessClaims:
        """Verify the admitted token with `key` and enforce the method's policy.

        Raises:
            InvalidToken: The token is not valid for this method.
            InsufficientScope: It lacks a required scope.
        """
        return self._guard.check(admission.token, key, admission.policy)
