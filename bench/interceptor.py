"""Per-call cost of the client library's bearer-token interceptor over a bare channel.

Measured with `authsvc_client.AuthInterceptor` over a `TokenManager` (what the library's
`insecure_channel` installs). A minimal bearer-metadata interceptor is measured too, as
the floor: what any Python interceptor costs in grpcio before its own logic.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable
from typing import Any

import grpc
from authsvc_client import AuthInterceptor, AuthsvcClient, Credentials, TokenManager
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.workloads import Account

_ROUNDS = 10


@dataclasses.dataclass(frozen=True)
class _Details(grpc.ClientCallDetails):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


class _BearerInterceptor(grpc.UnaryUnaryClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call, and nothing else."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def intercept_unary_unary(
        self, continuation: Callable[[Any, Any], Any], details: Any, request: Any
    ) -> Any:
        metadata = (*(details.metadata or ()), self._header)
        return continuation(
            _Details(
                details.method, details.timeout, metadata, details.credentials,
                details.wait_for_ready, details.compression,
            ),
            request,
        )  # fmt: skip


@dataclasses.dataclass(frozen=True)
class InterceptorCost:
    """Microseconds per sequential Health/Check call, bare and through an interceptor.

    `direct_us` is the interceptor's own Python work per call, timed by calling it with a
    continuation that returns at once: steadier than the difference of two round trips,
    which on a busy machine can be swamped by noise.
    """

    label: str
    bare_us: float
    intercepted_us: float
    direct_us: float

    @property
    def overhead_us(self) -> float:
        """Added microseconds per call."""
        return self.intercepted_us - self.bare_us


def per_call_us(call: Callable[[], object], seconds: float) -> float:
    """Mean microseconds of `call()` made back to back for about `seconds`."""
    call()
    n = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        call()
        n += 1
    return (time.perf_counter() - started) / max(1, n) * 1e6


def _health_call(channel: grpc.Channel) -> Callable[[], object]:
    stub = health_pb2_grpc.HealthStub(channel)
    request = health_pb2.HealthCheckRequest()
    return lambda: stub.Check(request, timeout=10)


def direct_us(interceptor: grpc.UnaryUnaryClientInterceptor, seconds: float) -> float:
    """Microseconds `interceptor` spends per unary call, outside gRPC itself."""
    details = _Details("/grpc.health.v1.Health/Check", 10.0, None, None, None, None)
    request = health_pb2.HealthCheckRequest()
    done = object()

    def continuation(_details: Any, _request: Any) -> Any:
        return done

    fake: Any = continuation

    return per_call_us(lambda: interceptor.intercept_unary_unary(fake, details, request), seconds)


def compare(
    label: str,
    bare: grpc.Channel,
    interceptor: grpc.UnaryUnaryClientInterceptor,
    seconds: float,
) -> InterceptorCost:
    """Alternate rounds on a bare channel and one through `interceptor` (medians of the
    rounds), then time the interceptor directly."""
    wrapped = grpc.intercept_channel(bare, interceptor)
    plain_call, wrapped_call = _health_call(bare), _health_call(wrapped)
    plain: list[float] = []
    intercepted: list[float] = []
    for _ in range(_ROUNDS):
        plain.append(per_call_us(plain_call, seconds / (2 * _ROUNDS)))
        intercepted.append(per_call_us(wrapped_call, seconds / (2 * _ROUNDS)))
    return InterceptorCost(
        label,
        statistics.median(plain),
        statistics.median(intercepted),
        direct_us(interceptor, seconds / 4),
    )


def measure_reference(target: str, token: str, seconds: float) -> InterceptorCost:
    """The floor: a minimal interceptor that only adds a bearer header."""
    with grpc.insecure_channel(target) as bare:
        interceptor = _BearerInterceptor(token)
        return compare("reference: minimal bearer-metadata interceptor", bare, interceptor, seconds)


def measure_library(target: str, account: Account, seconds: float) -> InterceptorCost:
    """The library's `AuthInterceptor` with a `TokenManager` (what its `insecure_channel`
    installs)."""
    with grpc.insecure_channel(target) as auth_channel, grpc.insecure_channel(target) as bare:
        manager = TokenManager(
            AuthsvcClient(auth_channel),
            credentials=Credentials.password(account.name, account.secret),
        )
        manager.access_token()  # log in now, not inside the first timed call
        label = "authsvc_client.AuthInterceptor + TokenManager"
        return compare(label, bare, AuthInterceptor(manager), seconds)
