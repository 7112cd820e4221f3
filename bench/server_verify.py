"""Local token verification in the library's server interceptor vs a remote Validate.

A small blocking gRPC server (the standard health service standing in for a resource
service) is started three times in this process: without an interceptor, with
`authsvc_client.ServerAuthInterceptor` verifying locally with authsvc's JWKS, and with
`confirm_with_authsvc=True` (local verification plus a Validate RPC per call). A client
makes sequential calls with the bearer token; the differences are the per-call costs.
"""

from __future__ import annotations

import dataclasses
from concurrent import futures
from typing import Any

import grpc
from authsvc_client import AuthsvcClient, ServerAuthInterceptor
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from authsvc.redis_process import free_port
from bench.interceptor import per_call_us


@dataclasses.dataclass(frozen=True)
class ServerVerifyCost:
    """Microseconds per protected call (sequential, client and server in one process)."""

    bare_us: float
    local_us: float
    remote_us: float

    @property
    def local_overhead_us(self) -> float:
        """What local verification adds to a call."""
        return self.local_us - self.bare_us

    @property
    def remote_overhead_us(self) -> float:
        """What local verification plus a Validate round trip add to a call."""
        return self.remote_us - self.bare_us

    @property
    def ratio(self) -> float:
        """How many times the remote check costs the local one."""
        local = self.local_overhead_us
        return self.remote_overhead_us / local if local > 0 else float("nan")


def _serve(interceptors: list[Any]) -> tuple[grpc.Server, str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
    health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
    target = f"127.0.0.1:{free_port()}"
    server.add_insecure_port(target)
    server.start()
    return server, target


def _timed(interceptors: list[Any], token: str, seconds: float) -> float:
    server, target = _serve(interceptors)
    try:
        with grpc.insecure_channel(target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest()
            metadata = (("authorization", f"Bearer {token}"),)
            if interceptors:
                try:
                    stub.Check(request, timeout=10, metadata=(("authorization", "Bearer x.y.z"),))
                except grpc.RpcError as exc:
                    if exc.code() != grpc.StatusCode.UNAUTHENTICATED:
                        raise
                else:
                    raise RuntimeError("the server interceptor let a forged token through")
            return per_call_us(lambda: stub.Check(request, timeout=10, metadata=metadata), seconds)
    finally:
        server.stop(None)


def measure(
    authsvc_target: str, token: str, issuer: str, audience: str, seconds: float
) -> ServerVerifyCost:
    """The three per-call times: no check, local verification, local plus Validate."""
    with grpc.insecure_channel(authsvc_target) as channel:
        client = AuthsvcClient(channel)
        local = ServerAuthInterceptor(client, issuer=issuer, audience=audience)
        remote = ServerAuthInterceptor(
            client, issuer=issuer, audience=audience, confirm_with_authsvc=True
        )
        third = seconds / 3
        return ServerVerifyCost(
            bare_us=_timed([], token, third),
            local_us=_timed([local], token, third),
            remote_us=_timed([remote], token, third),
        )
