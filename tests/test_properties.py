"""Property-based tests (hypothesis): whatever a caller sends, no RPC answers UNKNOWN or
INTERNAL, and the server stays healthy.

Requests are drawn from the message descriptors themselves, so every field of every RPC
of every service in the API's proto files is covered (a new RPC or field is fuzzed without
touching this file), mixed with strings that reach deep paths: real names, well-formed
refresh tokens, and access tokens signed with the server's own key holding arbitrary
claims. Example counts are modest so `make test` stays fast."""

from __future__ import annotations

import base64
import importlib
import json
import pkgutil
from collections.abc import Iterator
from typing import Any

import authsvc_api.v1 as api
import grpc
import pytest
from authsvc_api.v1 import auth_pb2
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.harness import Harness, harness_factory
from tests.test_validate import signing_key

PASSWORD = "correct horse battery staple"
NEVER = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
FUZZ = settings(
    max_examples=40,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
FD = pb_descriptor.FieldDescriptor


def _api_services() -> Iterator[Any]:
    """Every service of every proto file of the API package (a new file is fuzzed too)."""
    for info in pkgutil.iter_modules(api.__path__):
        if info.name.endswith("_pb2"):
            module = importlib.import_module(f"{api.__name__}.{info.name}")
            yield from module.DESCRIPTOR.services_by_name.values()


METHODS = [
    (service.full_name, method)
    for service in _api_services()
    for method in service.methods
    if not method.client_streaming and not method.server_streaming
]
_INT_RANGES = {
    FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FD.TYPE_ENUM: (-(2**31), 2**31 - 1),
    FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FD.TYPE_UINT32: (0, 2**32 - 1),
    FD.TYPE_FIXED32: (0, 2**32 - 1),
    FD.TYPE_UINT64: (0, 2**64 - 1),
    FD.TYPE_FIXED64: (0, 2**64 - 1),
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    """One server for every example; budgets wide enough that the fuzzing is not throttled
    into answering RESOURCE_EXHAUSTED early (that answer is fine, but shallow)."""
    for factory in harness_factory(tmp_path_factory.mktemp("props")):
        h = factory(login_source_max_failures=1_000_000, login_global_max_failures=1_000_000)
        h.create_user("alice", PASSWORD)
        h.create_user("keeper", PASSWORD)  # never fuzzed: proves the server still works
        yield h


# -- strategies ---------------------------------------------------------------------------

_SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_NASTY_TEXT = st.text(st.one_of(st.characters(), _SURROGATES), max_size=40)
_SURROGATE_TEXT = st.builds(
    lambda head, lone, tail: head + lone + tail,
    st.text(max_size=8),
    st.text(_SURROGATES, min_size=1, max_size=2),
    st.text(max_size=8),
)
_EDGE_TIMES = [2**63, 2**63 - 1, 2**64 + 1, -(2**63) - 1, -(2**70), 2**53 + 1, 253402300800, -1]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def json_values() -> st.SearchStrategy[Any]:
    """Anything JSON can hold, with huge integers and lone surrogates."""
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(allow_nan=False),
        _NASTY_TEXT,
    )
    return st.recursive(
        scalars,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(_NASTY_TEXT, inner, max_size=4)
        ),
        max_leaves=8,
    )


ClaimEdits = tuple[str, dict[str, Any], list[str]]


@st.composite
def claim_edits(draw: st.DrawFn) -> ClaimEdits:
    """A `typ` header, claims to set to something out of range or of any JSON type, and
    claims to drop."""
    typ = draw(st.sampled_from(["at+jwt", "at+jwt", "JWT"]))
    times = ["iat", "nbf", "exp"]
    texts = ["sub", "jti", "sid", "scope", "client_id", "aud"]
    changes: dict[str, Any] = {}
    dropped: list[str] = []
    for name in draw(
        st.lists(st.sampled_from([*times, *texts, "iss"]), min_size=1, max_size=3, unique=True)
    ):
        kind = draw(st.sampled_from(["edge", "edge", "any", "gone"]))
        if kind == "gone":
            dropped.append(name)
        elif kind == "any":
            changes[name] = draw(json_values())
        elif name in times:
            changes[name] = draw(st.one_of(st.sampled_from(_EDGE_TIMES), st.integers()))
        else:
            changes[name] = draw(_SURROGATE_TEXT)
    return typ, changes, dropped


def signed(h: Harness, live: auth_pb2.LoginResponse, edits: ClaimEdits) -> str:
    """The claims of a live session's token (so it passes every check but the ones the
    edits break), edited, and signed with the server's real key. Signed by hand: PyJWT
    refuses to encode some of these claims (a non-string iss)."""
    typ, changes, dropped = edits
    key, kid = signing_key(h)
    payload = live.access_token.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    for name in dropped:
        claims.pop(name, None)
    header = {"alg": "EdDSA", "kid": kid, "typ": typ}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(key.sign(signing_input.encode()))}"


@st.composite
def refresh_tokens(draw: st.DrawFn) -> str:
    subject = draw(st.one_of(st.just("alice"), _NASTY_TEXT))
    sub = _b64(subject.encode("utf-8", "surrogatepass"))
    sid = draw(st.text(min_size=1, max_size=30).filter(lambda s: "." not in s))
    secret = draw(st.text(min_size=40, max_size=60).filter(lambda s: "." not in s))
    return f"rt1.{sub}.{sid}.{secret}"


@st.composite
def mangled(draw: st.DrawFn, token: str) -> str:
    """`token` with a few characters replaced, dropped or repeated."""
    chars = list(token)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(chars) - 1))
        chars[i] = draw(st.sampled_from(["", chars[i] * 2, "A", ".", "=", "\x00", "é"]))
    return "".join(chars)


def strings(h: Harness, live: auth_pb2.LoginResponse) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=200),
        st.sampled_from(["alice", "authsvc", "read", "write", PASSWORD, "rt1.", "a.b.c"]),
        claim_edits().map(lambda edits: signed(h, live, edits)),
        refresh_tokens(),
        mangled(live.access_token),
        mangled(live.refresh_token),
        st.just("x" * 9000),
    )


def field_values(field: Any, text: st.SearchStrategy[str], depth: int) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_STRING:
        single: st.SearchStrategy[Any] = text
    elif field.type == FD.TYPE_BYTES:
        single = st.binary(max_size=64)
    elif field.type == FD.TYPE_BOOL:
        single = st.booleans()
    elif field.type in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        single = st.floats(width=32 if field.type == FD.TYPE_FLOAT else 64)
    elif field.type == FD.TYPE_MESSAGE:
        single = messages(field.message_type, text, depth + 1)
    else:
        lo, hi = _INT_RANGES[field.type]
        single = st.one_of(st.integers(lo, hi), st.sampled_from([0, 1, 2, 3, 4]))
    if field.is_repeated:
        return st.lists(single, max_size=6)
    return single


def messages(
    descriptor: Any, text: st.SearchStrategy[str], depth: int = 0
) -> st.SearchStrategy[Any]:
    """A message of `descriptor` with any subset of its fields set to any value."""
    cls = message_factory.GetMessageClass(descriptor)
    if depth > 2:
        return st.just(cls())
    fields = {f.name: field_values(f, text, depth) for f in descriptor.fields}

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        message = cls()
        for name in draw(st.lists(st.sampled_from(sorted(fields)), unique=True)) if fields else []:
            value = draw(fields[name])
            field = descriptor.fields_by_name[name]
            if field.is_repeated:
                if field.type == FD.TYPE_MESSAGE:
                    getattr(message, name).extend(value)
                else:
                    getattr(message, name)[:] = value
            elif field.type == FD.TYPE_MESSAGE:
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return build()


# -- helpers ------------------------------------------------------------------------------


def call(h: Harness, service: str, method: Any, request: Any) -> grpc.StatusCode:
    response = message_factory.GetMessageClass(method.output_type)
    multicallable: grpc.UnaryUnaryMultiCallable[Any, Any] = h.channel.unary_unary(
        f"/{service}/{method.name}",
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=response.FromString,
    )
    try:
        multicallable(request, timeout=30)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def raw(h: Harness, service: str, method: Any, body: bytes) -> grpc.StatusCode:
    multicallable: grpc.UnaryUnaryMultiCallable[bytes, bytes] = h.channel.unary_unary(
        f"/{service}/{method.name}"
    )
    try:
        multicallable(body, timeout=30)
    except grpc.RpcError as exc:
        code: grpc.StatusCode = exc.code()
        return code
    return grpc.StatusCode.OK


def still_healthy(h: Harness) -> None:
    check = h.channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    assert check(health_pb2.HealthCheckRequest(), timeout=10).status == 1
    pair = h.login("keeper", PASSWORD)
    assert h.stub.Validate(auth_pb2.ValidateRequest(access_token=pair.access_token)).valid
    assert h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=pair.refresh_token)).access_token


# -- properties ---------------------------------------------------------------------------


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.name for _, m in METHODS])
def test_no_request_gets_unknown_or_internal(server: Harness, service: str, method: Any) -> None:
    live = server.login("alice", PASSWORD)

    @FUZZ
    @given(request=messages(method.input_type, strings(server, live)))
    def prop(request: Any) -> None:
        assert call(server, service, method, request) not in NEVER

    prop()
    still_healthy(server)


@pytest.mark.parametrize(("service", "method"), METHODS, ids=[m.name for _, m in METHODS])
def test_no_request_bytes_get_unknown_or_internal(
    server: Harness, service: str, method: Any
) -> None:
    @FUZZ
    @given(body=st.binary(max_size=300))
    def prop(body: bytes) -> None:
        assert raw(server, service, method, body) not in NEVER

    prop()
    still_healthy(server)


def test_no_token_bytes_get_unknown_or_internal(server: Harness) -> None:
    texts = st.one_of(
        st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
        st.lists(st.binary(max_size=60).map(_b64), min_size=1, max_size=5).map(".".join),
        st.builds(
            lambda head, body: f"{_b64(head)}.{_b64(body)}.",
            st.dictionaries(_NASTY_TEXT, json_values(), max_size=4).map(
                lambda d: json.dumps(d).encode()
            ),
            st.binary(max_size=60),
        ),
    )
    scopes = [
        auth_pb2.REVOKE_SCOPE_TOKEN,
        auth_pb2.REVOKE_SCOPE_SESSION,
        auth_pb2.REVOKE_SCOPE_USER,
    ]

    @FUZZ
    @given(
        kind=st.sampled_from(["signed", "signed", "signed", "mangled", "text"]),
        edits=claim_edits(),
        text=texts,
        scope=st.sampled_from(scopes),
        data=st.data(),
    )
    def prop(kind: str, edits: ClaimEdits, text: str, scope: int, data: st.DataObject) -> None:
        live = server.login("alice", PASSWORD)  # a live session each time: Revoke ends some
        if kind == "signed":
            token = signed(server, live, edits)
        elif kind == "mangled":
            token = data.draw(mangled(live.access_token))
        else:
            token = text
        by_name = {method.name: (service, method) for service, method in METHODS}
        requests = {
            "Validate": auth_pb2.ValidateRequest(access_token=token),
            "Refresh": auth_pb2.RefreshRequest(refresh_token=token),
            "Revoke": auth_pb2.RevokeRequest(token=token, scope=scope),  # type: ignore[arg-type]
        }
        for name, request in requests.items():
            service, method = by_name[name]
            assert call(server, service, method, request) not in NEVER

    prop()
    still_healthy(server)
