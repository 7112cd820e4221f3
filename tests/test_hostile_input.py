"""Hostile bytes: requests that are not protobuf, strings that are not UTF-8, and correctly
signed tokens whose claims are out of range. Each is INVALID_ARGUMENT or an answer, never
UNKNOWN or INTERNAL, and never a traceback in the log."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from authsvc_api.v1 import auth_pb2
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2

from authsvc.rpc_decoding import MALFORMED_MESSAGE
from tests.harness import Harness
from tests.test_properties import METHODS as API_METHODS
from tests.test_validate import forge

PASSWORD = "correct horse battery staple"
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
REQUEST_TYPES: dict[str, Any] = {
    f"/{service}/{method.name}": message_factory.GetMessageClass(method.input_type)
    for service, method in API_METHODS  # every unary RPC of every API service
}
REQUEST_TYPES[HEALTH_CHECK] = health_pb2.HealthCheckRequest
NOT_PROTOBUF = [
    b"\xff\xff\xff\xff",  # a field number 0 / truncated varint
    b"\x0a\x05ab",  # a length beyond the end
    b"\x0a\x02\xff\xfe",  # field 1 (a string everywhere) that is not UTF-8
    b"\x0a\x03\xed\xa0\x80",  # field 1 holding an encoded lone surrogate
    b"\x12\x01\xc3",  # field 2 (string or repeated string): a truncated UTF-8 sequence
]


def raw_call(h: Harness, method: str, body: bytes) -> grpc.RpcError:
    """Send `body` as the request of `method`, unserialized; return the error it got."""
    call: grpc.UnaryUnaryMultiCallable[bytes, bytes] = h.channel.unary_unary(
        method, request_serializer=None, response_deserializer=None
    )
    with pytest.raises(grpc.RpcError) as excinfo:
        call(body, timeout=10)
    return excinfo.value


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


def parses(request_type: Any, body: bytes) -> bool:
    try:
        request_type.FromString(body)
    except Exception:
        return False
    return True


@pytest.mark.parametrize("method", sorted(REQUEST_TYPES))
@pytest.mark.parametrize("body", NOT_PROTOBUF, ids=range(len(NOT_PROTOBUF)))
def test_undecodable_request_is_invalid_argument_without_a_traceback(
    authsvc_server: Harness, caplog: pytest.LogCaptureFixture, method: str, body: bytes
) -> None:
    if parses(REQUEST_TYPES[method], body):
        pytest.skip("an unknown field of this request type: the bytes parse")
    with caplog.at_level(logging.DEBUG):
        error = raw_call(authsvc_server, method, body)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == MALFORMED_MESSAGE
    assert errors_logged(caplog) == []
    # The server is healthy and still answers well-formed calls.
    health = authsvc_server.channel.unary_unary(
        HEALTH_CHECK,
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    assert health(health_pb2.HealthCheckRequest(), timeout=10).status == 1


def test_a_request_stream_with_an_undecodable_message_is_invalid_argument(
    authsvc_server: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    reflection: grpc.StreamStreamMultiCallable[bytes, bytes] = authsvc_server.channel.stream_stream(
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        request_serializer=None,
        response_deserializer=None,
    )
    with caplog.at_level(logging.DEBUG), pytest.raises(grpc.RpcError) as excinfo:
        list(reflection(iter([b"\x0a\x02\xff\xfe"]), timeout=10))
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert errors_logged(caplog) == []


@pytest.fixture
def login(authsvc_server: Harness) -> auth_pb2.LoginResponse:
    authsvc_server.create_user("alice", PASSWORD)
    return authsvc_server.login("alice", PASSWORD)


OUT_OF_RANGE_CLAIMS: list[dict[str, Any]] = [
    {"exp": 2**63},
    {"exp": 2**64 + 1},
    {"iat": -(2**70)},
    {"nbf": -1},
    {"iat": 2**62, "nbf": 2**62},
    {"sub": "al\ud800ice"},
    {"sid": "\udfff"},
    {"jti": "x\ud83d"},
    {"scope": "read \ud800"},
    {"client_id": "\udc00svc"},
    {"aud": ["authsvc", "\ud800"]},
]


@pytest.mark.parametrize("changes", OUT_OF_RANGE_CLAIMS, ids=range(len(OUT_OF_RANGE_CLAIMS)))
def test_signed_token_with_out_of_range_claims_is_malformed(
    authsvc_server: Harness,
    login: auth_pb2.LoginResponse,
    caplog: pytest.LogCaptureFixture,
    changes: dict[str, Any],
) -> None:
    h = authsvc_server
    token = forge(h, login, **changes)  # signed with the server's own key
    with caplog.at_level(logging.DEBUG):
        answer = h.stub.Validate(auth_pb2.ValidateRequest(access_token=token), timeout=10)
        for scope in (auth_pb2.REVOKE_SCOPE_TOKEN, auth_pb2.REVOKE_SCOPE_USER):
            h.revoke(token, scope)  # RFC 7009: an invalid token is OK, and ends nothing
    assert not answer.valid and answer.reason == auth_pb2.INVALID_REASON_MALFORMED
    assert errors_logged(caplog) == []
    assert h.stub.Validate(auth_pb2.ValidateRequest(access_token=login.access_token)).valid
