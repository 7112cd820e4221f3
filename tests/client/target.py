"""A real protected service for the end-to-end tests: four methods, one of each call kind.

`test.Echo` carries raw bytes (no proto needed). It runs on a real port behind the library's
server interceptor (blocking `grpc.server` or `grpc.aio`, in a thread of its own), and counts
every call that reaches the port, authorised or not.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import grpc.aio
from authsvc_client import (
    PUBLIC,
    AsyncAuthsvcClient,
    AsyncServerAuthInterceptor,
    AuthsvcClient,
    MethodPolicy,
    ServerAuthInterceptor,
    claims_or_none,
    current_claims,
)

from tests.harness import Harness

SERVICE = "test.Echo"
UNARY = f"/{SERVICE}/Unary"
SERVER_STREAM = f"/{SERVICE}/ServerStream"
CLIENT_STREAM = f"/{SERVICE}/ClientStream"
BIDI = f"/{SERVICE}/Bidi"
PUBLIC_METHOD = f"/{SERVICE}/Public"


def _who() -> bytes:
    return current_claims().subject.encode()


# Blocking handlers.
def _unary(request: bytes, context: grpc.ServicerContext) -> bytes:
    return request + b"|" + _who()


def _server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
    for i in range(3):
        yield request + b"|" + _who() + b"|" + str(i).encode()


def _client_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
    return b",".join(requests) + b"|" + _who()


def _bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
    for request in requests:
        yield request + b"|" + _who()


def _public(request: bytes, context: grpc.ServicerContext) -> bytes:
    return b"public|" + (b"claims" if claims_or_none() is not None else b"none")


# asyncio handlers.
async def _aunary(request: bytes, context: Any) -> bytes:
    return request + b"|" + _who()


async def _aserver_stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
    for i in range(3):
        yield request + b"|" + _who() + b"|" + str(i).encode()


async def _aclient_stream(requests: AsyncIterator[bytes], context: Any) -> bytes:
    return b",".join([r async for r in requests]) + b"|" + _who()


async def _abidi(requests: AsyncIterator[bytes], context: Any) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request + b"|" + _who()


async def _apublic(request: bytes, context: Any) -> bytes:
    return b"public|" + (b"claims" if claims_or_none() is not None else b"none")


def _handlers(aio: bool) -> grpc.GenericRpcHandler:
    if aio:
        table: dict[str, Any] = {
            "Unary": grpc.unary_unary_rpc_method_handler(_aunary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(_aserver_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(_aclient_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(_abidi),
            "Public": grpc.unary_unary_rpc_method_handler(_apublic),
        }
    else:
        table = {
            "Unary": grpc.unary_unary_rpc_method_handler(_unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
            "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
            "Public": grpc.unary_unary_rpc_method_handler(_public),
        }
    return grpc.method_handlers_generic_handler(SERVICE, table)


class _Counter(grpc.ServerInterceptor):
    def __init__(self, counts: collections.Counter[str]) -> None:
        self.counts = counts

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        self.counts[handler_call_details.method.rsplit("/", 1)[-1]] += 1
        return continuation(handler_call_details)


class _AsyncCounter(grpc.aio.ServerInterceptor):
    def __init__(self, counts: collections.Counter[str]) -> None:
        self.counts = counts

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Any:
        self.counts[handler_call_details.method.rsplit("/", 1)[-1]] += 1
        return await continuation(handler_call_details)


def default_policies() -> dict[str, MethodPolicy]:
    return {
        PUBLIC_METHOD: PUBLIC,
        CLIENT_STREAM: MethodPolicy.require("write"),
    }


class Target:
    """The protected service, started on 127.0.0.1 and stopped by `close()`.

    Args:
        harness: The authsvc to trust.
        aio: Serve with grpc.aio (and the asyncio interceptor) instead of grpc.server.
        audience: The audience required; default: the harness's default audience.
        confirm: Confirm every token with Validate (instant revocation).
        policies: Method policies; default: `default_policies()`.
        min_key_refetch_interval: For the unknown-kid tests.
    """

    def __init__(
        self,
        harness: Harness,
        *,
        aio: bool = False,
        audience: str | None = None,
        confirm: bool = False,
        policies: Mapping[str, MethodPolicy] | None = None,
        min_key_refetch_interval: float = 30.0,
    ) -> None:
        self.attempts: collections.Counter[str] = collections.Counter()
        self._options: dict[str, Any] = {
            "issuer": harness.settings.issuer,
            "audience": audience or harness.settings.default_audience,
            "policies": default_policies() if policies is None else policies,
            "confirm_with_authsvc": confirm,
            "wall_clock": harness.clock.now,
            "clock": harness.clock.now,
            "min_key_refetch_interval": min_key_refetch_interval,
        }
        self._authsvc_target = harness.target
        self._aio = aio
        if aio:
            self._start_aio()
        else:
            self._start_sync()
        self.address = f"127.0.0.1:{self.port}"

    def _start_sync(self) -> None:
        self._channel = grpc.insecure_channel(self._authsvc_target)
        interceptor = ServerAuthInterceptor(AuthsvcClient(self._channel), **self._options)
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=16), interceptors=[_Counter(self.attempts), interceptor]
        )
        self._server.add_generic_rpc_handlers((_handlers(aio=False),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._server.start()

    def _start_aio(self) -> None:
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._stop = threading.Event()

        async def serve() -> None:
            channel = grpc.aio.insecure_channel(self._authsvc_target)
            interceptor = AsyncServerAuthInterceptor(AsyncAuthsvcClient(channel), **self._options)
            server = grpc.aio.server(interceptors=[_AsyncCounter(self.attempts), interceptor])
            server.add_generic_rpc_handlers((_handlers(aio=True),))
            self.port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            stopping = asyncio.Event()
            self._stopping = stopping
            started.set()
            await stopping.wait()
            await server.stop(grace=None)
            await channel.close()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="target-aio", daemon=True)
        self._thread.start()
        assert started.wait(timeout=30)

    def close(self) -> None:
        if self._aio:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=30)
        else:
            self._server.stop(grace=None).wait(timeout=10)
            self._channel.close()


def identity(data: bytes) -> bytes:
    return data


def stubs(channel: grpc.Channel) -> dict[str, Any]:
    """Multi-callables for the four kinds (plus Public) on a blocking channel."""
    kw: dict[str, Any] = {"request_serializer": identity, "response_deserializer": identity}
    return {
        "unary": channel.unary_unary(UNARY, **kw),
        "server_stream": channel.unary_stream(SERVER_STREAM, **kw),
        "client_stream": channel.stream_unary(CLIENT_STREAM, **kw),
        "bidi": channel.stream_stream(BIDI, **kw),
        "public": channel.unary_unary(PUBLIC_METHOD, **kw),
    }


def aio_stubs(channel: grpc.aio.Channel) -> dict[str, Any]:
    """The same for a grpc.aio channel."""
    kw: dict[str, Any] = {"request_serializer": identity, "response_deserializer": identity}
    return {
        "unary": channel.unary_unary(UNARY, **kw),
        "server_stream": channel.unary_stream(SERVER_STREAM, **kw),
        "client_stream": channel.stream_unary(CLIENT_STREAM, **kw),
        "bidi": channel.stream_stream(BIDI, **kw),
        "public": channel.unary_unary(PUBLIC_METHOD, **kw),
    }
