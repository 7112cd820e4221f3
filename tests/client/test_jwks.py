"""KeySource against a real, slow GetJwks endpoint: callers arriving during a fetch wait for it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from authsvc_api.v1 import auth_pb2
from authsvc_client import AuthsvcClient, KeyCache, KeySource
from cryptography.hazmat.primitives.asymmetric import ed25519
from jwt.algorithms import OKPAlgorithm

THREADS = 16


def jwks(kid: str) -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return json.dumps({"keys": [json.loads(OKPAlgorithm.to_jwk(key.public_key())) | {"kid": kid}]})


class WatchedCache(KeyCache):
    """A key cache that notes which threads have consulted it: a caller has then arrived."""

    def __init__(self, clock: Callable[[], float]) -> None:
        super().__init__(clock=clock, min_refetch_interval=30)
        self.callers = 0
        self.changed = threading.Condition()
        self._seen = threading.local()  # not thread ids: a finished thread's id is reused

    def _arrive(self) -> None:
        if getattr(self._seen, "arrived", False):
            return
        self._seen.arrived = True
        with self.changed:
            self.callers += 1
            self.changed.notify_all()

    def needs_fetch(self, kid: str) -> bool:
        self._arrive()
        return super().needs_fetch(kid)

    def knows(self, kid: str) -> bool:
        self._arrive()
        return super().knows(kid)


class SlowJwks:
    """A real GetJwks server that answers only once `THREADS` callers have arrived."""

    def __init__(self, cache: WatchedCache, answer: str) -> None:
        self.calls = 0
        self._cache, self._answer = cache, answer
        handler = grpc.unary_unary_rpc_method_handler(
            self._get_jwks,
            request_deserializer=auth_pb2.GetJwksRequest.FromString,
            response_serializer=auth_pb2.GetJwksResponse.SerializeToString,
        )
        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        self.server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("authsvc.v1.AuthService", {"GetJwks": handler}),)
        )
        self.target = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def _get_jwks(
        self, request: auth_pb2.GetJwksRequest, context: grpc.ServicerContext
    ) -> auth_pb2.GetJwksResponse:
        self.calls += 1
        with self._cache.changed:
            arrived = self._cache.changed.wait_for(
                lambda: self._cache.callers >= THREADS, timeout=30
            )
        assert arrived, f"only {self._cache.callers} callers arrived"
        return auth_pb2.GetJwksResponse(jwks_json=self._answer)


@pytest.fixture
def clock() -> list[float]:
    return [0.0]


@pytest.fixture
def cache(clock: list[float]) -> WatchedCache:
    return WatchedCache(clock=lambda: clock[0])


@pytest.fixture
def slow_jwks(cache: WatchedCache) -> Iterator[SlowJwks]:
    server = SlowJwks(cache, jwks("new"))
    yield server
    server.server.stop(grace=None).wait(timeout=10)


@pytest.mark.parametrize("start", ["cold", "rotated"])
def test_callers_arriving_during_a_fetch_wait_for_it(
    start: str, cache: WatchedCache, clock: list[float], slow_jwks: SlowJwks
) -> None:
    if start == "rotated":  # keys known, but not the one that now signs tokens
        cache.fetching()
        cache.update(jwks("old"))
        clock[0] = 31.0  # past the refetch rate limit
    with grpc.insecure_channel(slow_jwks.target) as channel:
        source = KeySource(AuthsvcClient(channel).get_jwks, cache)
        outcomes: list[str] = []

        def call() -> None:
            try:
                outcomes.append(str(source.key("new").key_id))
            except Exception as exc:  # any failure is an outcome to compare
                outcomes.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=call) for _ in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
    assert outcomes == ["new"] * THREADS
    assert slow_jwks.calls == 1
