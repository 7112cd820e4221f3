"""Test harness: a private redis-server and a real authsvc grpc.aio server on real ports.

The server runs in a background thread with its own event loop and an injected
`FakeClock`, so tests expire tokens by advancing the clock instead of sleeping.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import grpc
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc

from authsvc.config import Settings
from authsvc.events import RecordingSink
from authsvc.redis_process import RedisProcess
from authsvc.revocation_view import RevocationView
from authsvc.server import AuthServer
from authsvc.store import AccountKind, RedisStore
from tests.relay import SourceRelay

T = TypeVar("T")


AUTHSVC_BIN = str(Path(sys.executable).with_name("authsvc"))
"""The `authsvc` console script of the interpreter running the tests."""


def env_without_authsvc_settings(**settings: str) -> dict[str, str]:
    """This process's environment minus every `AUTHSVC_*` variable, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
    env.update(settings)
    return env


def redis_process(workdir: Path, port: int | None = None) -> RedisProcess:
    """A private redis-server on a free port, with an fsync'd AOF so data survives a restart
    (not started yet)."""
    return RedisProcess(workdir, port=port, appendfsync="always")


class FakeClock:
    """A wall clock that only moves when told; starts at the real time."""

    def __init__(self, start: float) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    __call__ = now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += seconds


class CountingInterceptor(grpc.aio.ServerInterceptor):
    """Counts the RPCs the server handles, by method short name."""

    def __init__(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.changed = threading.Condition()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        with self.changed:
            self.counts[handler_call_details.method.rsplit("/", 1)[-1]] += 1
            self.changed.notify_all()
        return await continuation(handler_call_details)


class Harness:
    """A running authsvc server with its own Redis (or the `redis_url` given: a Cluster,
    a Sentinel group), a fake clock and a sync stub."""

    def __init__(self, workdir: Path, shared_with: Harness | None = None, **overrides: Any) -> None:
        import time

        self._redis: RedisProcess | None = None
        if shared_with is not None:  # another instance over the same Redis and key set
            self._redis = shared_with._redis
            redis_url = shared_with.settings.redis_url
            data_dir = shared_with.settings.data_dir
        elif "redis_url" in overrides:
            redis_url = overrides["redis_url"]
            data_dir = workdir / "data"
        else:
            self._redis = redis_process(workdir / "redis").start()
            redis_url = self._redis.url
            data_dir = workdir / "data"
        self._owns_redis = shared_with is None and self._redis is not None
        values: dict[str, Any] = {
            "listen": "127.0.0.1:0",
            "redis_url": redis_url,
            "data_dir": data_dir,
            "redis_socket_timeout": 2.0,
            "redis_connect_timeout": 1.0,
            "health_interval_seconds": 0.2,
            "shutdown_drain_seconds": 0.0,
            "hash_threads": 2,
        }
        values.update(overrides)
        self.settings: Settings = Settings(**values)
        self.clock: FakeClock = shared_with.clock if shared_with else FakeClock(time.time())
        self._counter = CountingInterceptor()
        self.events = RecordingSink()
        self.rpc_counts = self._counter.counts
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self.server: AuthServer
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="authsvc-server", daemon=True)
        self._thread.start()
        self._started.wait(timeout=30)
        if self._error is not None:
            raise self._error
        self.target = f"127.0.0.1:{self.server.port}"
        self.channel = grpc.insecure_channel(self.target)
        self.stub = auth_pb2_grpc.AuthServiceStub(self.channel)
        self._relays: list[tuple[SourceRelay, grpc.Channel]] = []

    def stub_from(self, source_ip: str) -> auth_pb2_grpc.AuthServiceStub:
        """A stub whose calls reach the server from `source_ip` (127.0.0.2, ...)."""
        relay = SourceRelay(self.server.port, source_ip)
        channel = grpc.insecure_channel(relay.target)
        self._relays.append((relay, channel))
        return auth_pb2_grpc.AuthServiceStub(channel)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve())
        except BaseException as exc:  # surfaced to the constructor
            self._error = exc
            self._started.set()
        finally:
            self._loop.close()

    async def _serve(self) -> None:
        self._stop = asyncio.Event()
        self.server = AuthServer(
            self.settings,
            self.settings.redis_url,
            clock=self.clock,
            interceptors=[self._counter],
            sink=self.events,
        )
        await self.server.start()
        self._started.set()
        await self._stop.wait()
        await self.server.stop(grace=10.0)

    def run(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable` (a store call, a raw Redis command) on the server's loop."""

        async def wait() -> T:
            return await awaitable

        return asyncio.run_coroutine_threadsafe(wait(), self._loop).result(timeout=30)

    def wait_for_calls(self, method: str, count: int, timeout: float = 30) -> None:
        """Block until the server has received `count` calls of `method` (no polling)."""
        with self._counter.changed:
            if not self._counter.changed.wait_for(
                lambda: self.rpc_counts[method] >= count, timeout=timeout
            ):
                raise TimeoutError(f"server saw {self.rpc_counts[method]} {method} calls")

    @property
    def store(self) -> RedisStore:
        return self.server._store

    @property
    def view(self) -> RevocationView:
        assert self.server.view is not None, "revocation view is off"
        return self.server.view

    def create_user(
        self, name: str, password: str, scopes: tuple[str, ...] = ("read", "write")
    ) -> None:
        pwhash = self.server._hasher.hash(password)
        self.run(self.store.create_account(name, AccountKind.USER, pwhash, scopes, self.clock()))

    def create_client(self, name: str, scopes: tuple[str, ...] = ("read", "write")) -> str:
        import secrets

        secret = secrets.token_urlsafe(32)
        pwhash = self.server._hasher.hash(secret)
        self.run(self.store.create_account(name, AccountKind.CLIENT, pwhash, scopes, self.clock()))
        return secret

    def login(self, name: str, password: str, **kwargs: Any) -> auth_pb2.LoginResponse:
        return self.stub.Login(
            auth_pb2.LoginRequest(username=name, password=password, **kwargs), timeout=30
        )

    def revoke(
        self,
        token: str,
        scope: auth_pb2.RevokeScope.ValueType = auth_pb2.REVOKE_SCOPE_TOKEN,
        bearer: str = "",
    ) -> None:
        """Revoke; `bearer` is sent as `authorization: Bearer` (an administrator's token)."""
        metadata = (("authorization", "Bearer " + bearer),) if bearer else ()
        self.stub.Revoke(
            auth_pb2.RevokeRequest(token=token, scope=scope), timeout=10, metadata=metadata
        )

    def admin_token(self, name: str = "root") -> str:
        """An access token of a new administrator account (AUTHSVC_ADMIN_SCOPE)."""
        password = "admin password " + name
        self.create_user(name, password, scopes=(self.settings.admin_scope,))
        return self.login(name, password).access_token

    @property
    def redis(self) -> RedisProcess:
        """The private redis-server (not for a Cluster or Sentinel group)."""
        assert self._redis is not None, "this harness runs on a given redis_url"
        return self._redis

    def stop_redis(self) -> None:
        self.redis.stop()

    def start_redis(self) -> None:
        self.redis.start()

    def stop_server(self) -> None:
        """Gracefully stop the server (in-flight calls finish) and wait for it."""
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def close(self) -> None:
        for relay, channel in self._relays:
            channel.close()
            relay.close()
        self.stop_server()
        self.channel.close()
        if self._owns_redis:
            self.redis.stop()


@dataclasses.dataclass
class HarnessFactory:
    """Makes harnesses with settings overrides and closes them all at the end."""

    workdir: Path
    made: list[Harness] = dataclasses.field(default_factory=list)

    def __call__(self, shared_with: Harness | None = None, **overrides: Any) -> Harness:
        h = Harness(self.workdir / f"h{len(self.made)}", shared_with, **overrides)
        self.made.append(h)
        return h

    def close(self) -> None:
        for h in reversed(self.made):
            h.close()


def harness_factory(workdir: Path) -> Iterator[HarnessFactory]:
    factory = HarnessFactory(workdir)
    try:
        yield factory
    finally:
        factory.close()
