"""What metrics cost per Validate, timed directly: the server interceptor and the domain
counters of one call, with a handler that returns at once (steadier than the difference
of two load runs on a noisy machine, which the bench measures as well)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from authsvc.metrics import Metrics

_METHOD = "/authsvc.v1.AuthService/Validate"


class _Details(grpc.HandlerCallDetails):
    method = _METHOD
    invocation_metadata = ()


class _Context:
    """The one thing the interceptor asks of a servicer context."""

    def code(self) -> None:
        return None


async def _answer(request: Any, context: Any) -> Any:
    return request


def direct_us(seconds: float) -> float:
    """Microseconds metrics add to one Validate call (median of alternating rounds)."""
    return asyncio.run(_measure(seconds))


async def _measure(seconds: float) -> float:
    metrics = Metrics()
    handler: grpc.RpcMethodHandler[Any, Any] = grpc.unary_unary_rpc_method_handler(_answer)

    async def continuation(details: grpc.HandlerCallDetails) -> Any:
        return handler

    details, context = _Details(), _Context()

    async def call(found: grpc.RpcMethodHandler[Any, Any] | None) -> None:
        assert found is not None and found.unary_unary is not None
        await found.unary_unary(None, context)  # type: ignore[arg-type]

    async def bare() -> None:
        await call(await continuation(details))

    async def measured() -> None:
        await call(await metrics.interceptor.intercept_service(continuation, details))
        metrics.validated(None, view_hit=True)

    rounds = 10
    costs = []
    for _ in range(rounds):
        costs.append(
            await _per_call_us(measured, seconds / rounds / 2)
            - await _per_call_us(bare, seconds / rounds / 2)
        )
    return sorted(costs)[rounds // 2]


async def _per_call_us(call: Callable[[], Awaitable[None]], seconds: float) -> float:
    n, started = 0, time.perf_counter()
    deadline = started + seconds
    while True:
        for _ in range(1000):
            await call()
        n += 1000
        now = time.perf_counter()
        if now >= deadline:
            return (now - started) / n * 1e6
