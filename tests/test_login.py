"""Login over a real gRPC server and real Redis: success, every failure, throttling."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import grpc
import jwt
import pytest
from authsvc_api.v1 import auth_pb2

from authsvc.store import AccountKind
from tests.harness import Harness, HarnessFactory

PASSWORD = "correct horse battery staple"


def _code(excinfo: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return excinfo.value.code()


def retry_after(excinfo: pytest.ExceptionInfo[grpc.RpcError]) -> str:
    trailers = excinfo.value.trailing_metadata() or ()
    return next(str(item.value) for item in trailers if item.key == "retry-after")


def test_login_returns_a_signed_access_token_and_refresh_token(authsvc_server: Harness) -> None:
    authsvc_server.create_user("alice", PASSWORD)
    resp = authsvc_server.login("alice", PASSWORD)
    assert resp.token_type == "Bearer"
    assert resp.expires_in == 900
    assert resp.refresh_expires_in == 14 * 24 * 3600
    assert sorted(resp.scopes) == ["read", "write"]
    header = jwt.get_unverified_header(resp.access_token)
    assert header["typ"] == "at+jwt" and header["alg"] == "EdDSA" and header["kid"]
    claims = jwt.decode(resp.access_token, options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["sid"] == resp.session_id
    assert claims["aud"] == "authsvc" and claims["iss"] == "authsvc"
    assert claims["exp"] - claims["iat"] == 900
    assert {"jti", "nbf", "scope", "client_id"} <= set(claims)
    assert resp.refresh_token.startswith("rt1.") and len(resp.refresh_token) > 60


@pytest.mark.parametrize("username", ["alice", "nobody"])
def test_bad_credentials_are_one_generic_unauthenticated(
    authsvc_server: Harness, username: str
) -> None:
    authsvc_server.create_user("alice", PASSWORD)
    with pytest.raises(grpc.RpcError) as excinfo:
        authsvc_server.login(username, "wrong password")
    assert _code(excinfo) == grpc.StatusCode.UNAUTHENTICATED
    assert excinfo.value.details() == "invalid username or password"


@pytest.mark.parametrize(
    ("username", "password"),
    [("", PASSWORD), ("alice", ""), ("al ice", PASSWORD), ("a" * 129, PASSWORD),
     ("alice", "x" * 1025), ("{u:alice}", PASSWORD)],
)  # fmt: skip
def test_empty_or_oversized_input_is_invalid_argument(
    authsvc_server: Harness, username: str, password: str
) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        authsvc_server.login(username, password)
    assert _code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT


def test_long_passwords_are_byte_exact(authsvc_server: Harness) -> None:
    password = "p" * 63 + "é" + " " * 10  # 64+ characters, trailing spaces kept
    authsvc_server.create_user("bob", password)
    assert authsvc_server.login("bob", password).access_token
    with pytest.raises(grpc.RpcError):
        authsvc_server.login("bob", password.rstrip())


def test_scopes_granted_only_when_all_allowed(authsvc_server: Harness) -> None:
    authsvc_server.create_user("alice", PASSWORD, scopes=("read", "write"))
    assert list(authsvc_server.login("alice", PASSWORD, scopes=["read"]).scopes) == ["read"]
    with pytest.raises(grpc.RpcError) as excinfo:
        authsvc_server.login("alice", PASSWORD, scopes=["read", "admin"])
    assert _code(excinfo) == grpc.StatusCode.PERMISSION_DENIED


def test_unknown_audience_is_refused_and_configured_one_is_granted(
    authsvc_server_factory: object,
) -> None:
    h = authsvc_server_factory(audiences=("billing",))  # type: ignore[operator]
    h.create_user("alice", PASSWORD)
    resp = h.login("alice", PASSWORD, audience="billing")
    assert jwt.decode(resp.access_token, options={"verify_signature": False})["aud"] == "billing"
    with pytest.raises(grpc.RpcError) as excinfo:
        h.login("alice", PASSWORD, audience="elsewhere")
    assert _code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT


def test_service_account_logs_in_with_client_id_and_secret(authsvc_server: Harness) -> None:
    secret = authsvc_server.create_client("billing-svc", scopes=("invoices",))
    resp = authsvc_server.login("billing-svc", secret)
    claims = jwt.decode(resp.access_token, options={"verify_signature": False})
    assert claims["client_id"] == "billing-svc" and claims["scope"] == "invoices"


@pytest.mark.parametrize("username", ["alice", "ghost"])
def test_parallel_guesses_all_count_and_throttle(authsvc_server: Harness, username: str) -> None:
    authsvc_server.create_user("alice", PASSWORD)

    def guess(i: int) -> grpc.StatusCode:
        try:
            authsvc_server.login(username, f"guess-{i}")
        except grpc.RpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(guess, range(40)))
    # Exactly the first ten attempts reach the password check; the rest are throttled.
    assert codes.count(grpc.StatusCode.UNAUTHENTICATED) == 10
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) == 30


def test_throttle_says_when_to_retry_grows_and_success_resets(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("alice", PASSWORD)
    for i in range(10):
        with pytest.raises(grpc.RpcError):
            h.login("alice", f"wrong-{i}")
    with pytest.raises(grpc.RpcError) as excinfo:
        h.login("alice", PASSWORD)  # even the right password waits
    assert _code(excinfo) == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert retry_after(excinfo) == "1"
    h.clock.advance(1.01)
    with pytest.raises(grpc.RpcError):
        h.login("alice", "wrong-again")  # 11th failure: the delay doubles
    with pytest.raises(grpc.RpcError) as excinfo:
        h.login("alice", PASSWORD)
    assert retry_after(excinfo) == "2"
    h.clock.advance(2.01)
    assert h.login("alice", PASSWORD).access_token
    for i in range(9):  # the count was reset: nine more failures do not throttle
        with pytest.raises(grpc.RpcError) as excinfo:
            h.login("alice", f"wrong-{i}")
        assert _code(excinfo) == grpc.StatusCode.UNAUTHENTICATED
    assert h.login("alice", PASSWORD, scopes=["read"]).scopes == ["read"]


def test_disabled_user_cannot_log_in(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("alice", PASSWORD)
    h.run(h.store.disable_account("alice"))
    with pytest.raises(grpc.RpcError) as excinfo:
        h.login("alice", PASSWORD)
    assert _code(excinfo) == grpc.StatusCode.UNAUTHENTICATED


def test_get_jwks_publishes_the_signing_key(authsvc_server: Harness) -> None:
    authsvc_server.create_user("alice", PASSWORD)
    token = authsvc_server.login("alice", PASSWORD).access_token
    jwks = authsvc_server.stub.GetJwks(auth_pb2.GetJwksRequest()).jwks_json
    key = jwt.PyJWKSet.from_json(jwks)[jwt.get_unverified_header(token)["kid"]]
    claims = jwt.decode(token, key.key, algorithms=["EdDSA"], audience="authsvc")
    assert claims["sub"] == "alice"


def test_scope_denial_after_a_right_password_is_not_a_failed_guess(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("alice", PASSWORD, scopes=("read",))
    for _ in range(12):
        with pytest.raises(grpc.RpcError) as excinfo:
            h.login("alice", PASSWORD, scopes=["admin"])
        assert _code(excinfo) == grpc.StatusCode.PERMISSION_DENIED
    assert h.login("alice", PASSWORD).access_token


@pytest.mark.parametrize("username", ["alice\n", "alice\nbob", "\nalice"])
def test_names_with_line_breaks_are_refused(authsvc_server: Harness, username: str) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        authsvc_server.login(username, PASSWORD)
    assert _code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT


def test_more_calls_than_redis_connections_wait_instead_of_failing(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(redis_pool_size=1, redis_retries=0, revocation_view=False)
    h.create_user("alice", PASSWORD)
    token = h.login("alice", PASSWORD).access_token
    request = auth_pb2.ValidateRequest(access_token=token)
    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(lambda _: h.stub.Validate(request, timeout=30), range(64)))
    assert all(a.valid for a in answers)


def test_a_hash_made_with_weaker_parameters_is_upgraded_at_login(authsvc_server: Harness) -> None:
    from authsvc.passwords import PasswordHasher

    h = authsvc_server
    weak = PasswordHasher(memory_kib=7168, time_cost=5, parallelism=1, threads=1)
    weak_hash = weak.hash(PASSWORD)
    h.run(h.store.create_account("old", AccountKind.USER, weak_hash, ("read",), h.clock()))
    assert h.login("old", PASSWORD).access_token
    account = h.run(h.store.get_account("old"))
    assert account is not None
    upgraded = account.pwhash
    assert upgraded.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert h.login("old", PASSWORD).access_token


def test_an_account_gets_tokens_only_for_its_allowed_audiences(
    authsvc_server_factory: HarnessFactory,
) -> None:
    from authsvc import events

    h = authsvc_server_factory(audiences=("billing", "search"))
    h.create_user("alice", PASSWORD)
    assert h.login("alice", PASSWORD, audience="search").access_token  # empty: every one
    h.run(h.store.set_audiences("alice", ["billing"]))
    claims = jwt.decode(
        h.login("alice", PASSWORD, audience="billing").access_token,
        options={"verify_signature": False},
    )
    assert claims["aud"] == "billing"
    for audience in ("search", ""):  # "" asks for the default audience, not in the list
        for _ in range(11):  # a refused audience after the right password is no failed guess
            with pytest.raises(grpc.RpcError) as excinfo:
                h.login("alice", PASSWORD, audience=audience)
            assert _code(excinfo) == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as excinfo:  # unknown to the service: as before
        h.login("alice", PASSWORD, audience="elsewhere")
    assert _code(excinfo) == grpc.StatusCode.INVALID_ARGUMENT
    denied = [e for e in h.events.events if isinstance(e, events.LoginFailed)]
    assert {e.reason for e in denied} == {events.LoginFailure.DENIED_AUDIENCE}
    h.run(h.store.set_audiences("alice", []))
    assert h.login("alice", PASSWORD).access_token
