"""Checked samples through a real gRPC client, taken before and after every load run.

h2load cannot see `grpc-status`, and no server-side call counter exists, so a sample of
calls made by a real client (answers decoded and compared) brackets each run.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import grpc
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench.frames import framed_size


@dataclasses.dataclass
class Sample:
    """The outcome of a checked sample.

    Attributes:
        calls: Calls made; errors: failed calls; wrong: OK calls with a wrong answer.
        response_bytes: DATA bytes of the (last) right answer on the wire, for h2load's
            byte accounting; 0 when there was none.
    """

    calls: int = 0
    errors: int = 0
    wrong: int = 0
    response_bytes: int = 0

    def add(self, other: Sample) -> None:
        """Accumulate another sample's counts."""
        self.calls += other.calls
        self.errors += other.errors
        self.wrong += other.wrong
        self.response_bytes = other.response_bytes or self.response_bytes

    @property
    def clean(self) -> bool:
        """True when every call succeeded with the right answer."""
        return self.errors == 0 and self.wrong == 0


Probe = Callable[[], Sample]


def _sample(
    target: str,
    n: int,
    call: Callable[[grpc.Channel], Message],
    right: Callable[[Message], bool],
) -> Sample:
    out = Sample()
    with grpc.insecure_channel(target) as channel:
        for _ in range(n):
            out.calls += 1
            try:
                reply = call(channel)
            except grpc.RpcError:
                out.errors += 1
                continue
            if right(reply):
                out.response_bytes = framed_size(reply)
            else:
                out.wrong += 1
    return out


def health_probe(target: str, n: int = 20) -> Probe:
    """Health/Check must answer SERVING."""

    def call(channel: grpc.Channel) -> Message:
        reply: Message = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(), timeout=10
        )
        return reply

    def right(reply: Message) -> bool:
        assert isinstance(reply, health_pb2.HealthCheckResponse)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return lambda: _sample(target, n, call, right)


def validate_probe(
    target: str, token: str, expect_valid: bool, expect_reason: int, subject: str, n: int = 20
) -> Probe:
    """Validate of `token` must answer valid (for `subject`) or invalid with the reason."""
    request = auth_pb2.ValidateRequest(access_token=token)

    def call(channel: grpc.Channel) -> Message:
        reply: Message = auth_pb2_grpc.AuthServiceStub(channel).Validate(request, timeout=10)
        return reply

    def right(reply: Message) -> bool:
        assert isinstance(reply, auth_pb2.ValidateResponse)
        if expect_valid:
            return reply.valid and reply.claims.subject == subject
        return not reply.valid and reply.reason == expect_reason

    return lambda: _sample(target, n, call, right)


def login_probe(target: str, username: str, secret: str, n: int = 2) -> Probe:
    """Login must issue a token pair whose access token then validates for `username`."""

    def call(channel: grpc.Channel) -> Message:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        login = stub.Login(auth_pb2.LoginRequest(username=username, password=secret), timeout=30)
        reply: Message = stub.Validate(
            auth_pb2.ValidateRequest(access_token=login.access_token), timeout=10
        )
        return reply

    def right(reply: Message) -> bool:
        assert isinstance(reply, auth_pb2.ValidateResponse)
        return reply.valid and reply.claims.subject == username

    return lambda: _sample(target, n, call, right)


def run_probes(probes: list[Probe]) -> Sample:
    """Run probes and add up their samples."""
    total = Sample()
    for probe in probes:
        total.add(probe())
    return total
