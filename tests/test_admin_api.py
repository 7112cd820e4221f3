"""The admin API (authsvc.v1.AdminService) over a real server: every RPC, who may call it,
paging, and bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from authsvc_api.v1 import admin_pb2, admin_pb2_grpc, auth_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from authsvc import events
from authsvc.keys import generate_private_key, private_key_pem
from authsvc.store import AccountKind
from tests.certs import make_pki, mtls_settings
from tests.harness import Harness, HarnessFactory
from tests.test_tls import tls_channel

PASSWORD = "correct horse battery staple"
A = admin_pb2
Metadata = tuple[tuple[str, str], ...]


class Admin:
    """An AdminService stub and the administrator's token (`root`, with the admin scope)."""

    def __init__(self, h: Harness) -> None:
        h.create_user("root", PASSWORD, scopes=("authsvc:admin",))
        self.h = h
        self.token = h.login("root", PASSWORD).access_token
        self.stub = admin_pb2_grpc.AdminServiceStub(h.channel)

    @property
    def auth(self) -> Metadata:
        return (("authorization", f"Bearer {self.token}"),)

    def call(self, method: str, request: Any, metadata: Metadata | None = None) -> Any:
        rpc = getattr(self.stub, method)
        return rpc(request, metadata=self.auth if metadata is None else metadata, timeout=30)

    def code(self, method: str, request: Any, metadata: Metadata | None = None) -> grpc.StatusCode:
        try:
            self.call(method, request, metadata)
        except grpc.RpcError as exc:
            details = exc.details() or ""
            assert details and "Traceback" not in details
            return exc.code()
        return grpc.StatusCode.OK


@pytest.fixture
def admin(authsvc_server: Harness) -> Admin:
    return Admin(authsvc_server)


def names(admin: Admin) -> list[str]:
    return [a.name for a in admin.call("ListAccounts", A.ListAccountsRequest()).accounts]


def validate(h: Harness, token: str) -> auth_pb2.ValidateResponse:
    return h.stub.Validate(auth_pb2.ValidateRequest(access_token=token), timeout=10)


def code_of(call: Callable[[], object]) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


# One well-formed request per RPC (the accounts they name exist after `seed`).
REQUESTS: dict[str, Any] = {
    "CreateUser": A.CreateUserRequest(username="newbie", password="pw-newbie-1"),
    "CreateServiceAccount": A.CreateServiceAccountRequest(name="newsvc"),
    "DisableAccount": A.DisableAccountRequest(name="alice"),
    "EnableAccount": A.EnableAccountRequest(name="alice"),
    "SetScopes": A.SetScopesRequest(name="alice", scopes=["read"]),
    "SetAudiences": A.SetAudiencesRequest(name="alice", audiences=["authsvc"]),
    "ResetPassword": A.ResetPasswordRequest(name="alice", new_password="pw-alice-2"),
    "ListAccounts": A.ListAccountsRequest(),
    "ListSessions": A.ListSessionsRequest(name="alice"),
    "EndSession": A.EndSessionRequest(name="alice", session_id="AAAAAAAAAAAAAAAAAAAAAA"),
    "EndAllSessions": A.EndAllSessionsRequest(name="alice"),
    "RotateSigningKeys": A.RotateSigningKeysRequest(),
}


def test_the_service_lists_every_rpc_tested_here() -> None:
    service = A.DESCRIPTOR.services_by_name["AdminService"]
    assert {m.name for m in service.methods} == set(REQUESTS)


@pytest.mark.parametrize("method", sorted(REQUESTS))
def test_only_administrators_may_call(admin: Admin, method: str) -> None:
    h = admin.h
    h.create_user("alice", PASSWORD, scopes=("read",))
    alice = h.login("alice", PASSWORD)
    user_token = (("authorization", f"Bearer {alice.access_token}"),)
    request = REQUESTS[method]
    assert admin.code(method, request, metadata=()) == grpc.StatusCode.UNAUTHENTICATED
    garbage = (("authorization", "Bearer not.a.token"),)
    assert admin.code(method, request, metadata=garbage) == grpc.StatusCode.UNAUTHENTICATED
    # A refresh token is no bearer token either.
    refresh = (("authorization", f"Bearer {alice.refresh_token}"),)
    assert admin.code(method, request, metadata=refresh) == grpc.StatusCode.UNAUTHENTICATED
    assert admin.code(method, request, metadata=user_token) == grpc.StatusCode.PERMISSION_DENIED
    # Nothing happened: alice is untouched, nobody was created, no key was added.
    assert validate(h, alice.access_token).valid
    assert names(admin) == ["alice", "root"]
    assert not [e for e in h.events.events if isinstance(e, events.AccountChanged)]
    assert not [e for e in h.events.events if isinstance(e, events.KeyRotated)]
    # And the administrator may.
    assert admin.code(method, request) in (grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND)


def test_an_admin_token_loses_its_power_with_its_scope(admin: Admin) -> None:
    admin.call("SetScopes", A.SetScopesRequest(name="root", scopes=["read"]))
    code = admin.code("ListAccounts", A.ListAccountsRequest())
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_an_allow_listed_client_certificate_is_an_administrator(
    authsvc_server_factory: HarnessFactory, tmp_path: Path
) -> None:
    ca, server, client = make_pki(tmp_path)
    h = authsvc_server_factory(
        **mtls_settings(ca, server),
        admin_identities=("orders-svc",),
    )
    with tls_channel(h.target, ca, client) as channel:
        stub = admin_pb2_grpc.AdminServiceStub(channel)
        created = stub.CreateServiceAccount(A.CreateServiceAccountRequest(name="billing"))
    assert created.client_id == "billing"
    changed = [e for e in h.events.events if isinstance(e, events.AccountChanged)]
    assert changed == [
        events.AccountChanged("billing", "mtls:orders-svc", "client_created", "mtls:orders-svc")
    ]


def test_create_a_user_and_a_service_account(admin: Admin) -> None:
    h = admin.h
    user = admin.call(
        "CreateUser", A.CreateUserRequest(username="bob", password="pw-bob-1", scopes=["read"])
    )
    assert user.account == A.Account(
        name="bob", kind=A.ACCOUNT_KIND_USER, scopes=["read"], created=int(h.clock())
    )
    assert h.login("bob", "pw-bob-1").scopes == ["read"]
    svc = admin.call(
        "CreateServiceAccount", A.CreateServiceAccountRequest(name="billing", scopes=["invoices"])
    )
    assert svc.client_id == "billing" and len(svc.client_secret) >= 43
    assert svc.account.kind == A.ACCOUNT_KIND_SERVICE
    assert h.login(svc.client_id, svc.client_secret).scopes == ["invoices"]
    # The secret is shown once: no listing carries it, and no event does.
    listing = admin.call("ListAccounts", A.ListAccountsRequest())
    assert svc.client_secret not in str(listing)
    assert svc.client_secret not in repr(h.events.events)
    assert "pw-bob-1" not in repr(h.events.events)
    for method, request in (
        ("CreateUser", A.CreateUserRequest(username="bob", password="pw-other-1")),
        ("CreateServiceAccount", A.CreateServiceAccountRequest(name="billing")),
    ):
        assert admin.code(method, request) == grpc.StatusCode.ALREADY_EXISTS
    assert h.login("bob", "pw-bob-1")  # the failed create changed nothing
    changed = [(e.account, e.action, e.by, e.source) for e in h.events.events
               if isinstance(e, events.AccountChanged)]  # fmt: skip
    assert changed == [
        ("bob", "user_created", "token:root", "127.0.0.1"),
        ("billing", "client_created", "token:root", "127.0.0.1"),
    ]


def test_disable_ends_sessions_and_enable_lets_the_account_back_in(admin: Admin) -> None:
    h = admin.h
    h.create_user("alice", PASSWORD)
    first, second = h.login("alice", PASSWORD), h.login("alice", PASSWORD)
    ended = admin.call("DisableAccount", A.DisableAccountRequest(name="alice")).sessions_ended
    assert ended == 2
    assert not validate(h, first.access_token).valid and not validate(h, second.access_token).valid
    assert code_of(lambda: h.login("alice", PASSWORD)) == grpc.StatusCode.UNAUTHENTICATED
    (alice,) = [a for a in admin.call("ListAccounts", A.ListAccountsRequest()).accounts
                if a.name == "alice"]  # fmt: skip
    assert alice.disabled
    admin.call("EnableAccount", A.EnableAccountRequest(name="alice"))
    assert h.login("alice", PASSWORD)
    for method in ("DisableAccount", "EnableAccount"):
        request = getattr(A, f"{method}Request")(name="nobody")
        assert admin.code(method, request) == grpc.StatusCode.NOT_FOUND


def test_set_scopes_changes_what_a_login_may_get(admin: Admin) -> None:
    h = admin.h
    h.create_user("alice", PASSWORD, scopes=("read",))
    admin.call("SetScopes", A.SetScopesRequest(name="alice", scopes=["read", "write"]))
    assert h.login("alice", PASSWORD).scopes == ["read", "write"]
    admin.call("SetScopes", A.SetScopesRequest(name="alice", scopes=[]))
    denied = code_of(lambda: h.login("alice", PASSWORD, scopes=["read"]))
    assert denied == grpc.StatusCode.PERMISSION_DENIED
    missing = A.SetScopesRequest(name="nobody", scopes=["read"])
    assert admin.code("SetScopes", missing) == grpc.StatusCode.NOT_FOUND


def test_set_audiences_limits_what_a_login_may_ask_for(
    authsvc_server_factory: HarnessFactory,
) -> None:
    admin = Admin(authsvc_server_factory(audiences=("billing",)))
    h = admin.h
    h.create_user("alice", PASSWORD)
    assert h.login("alice", PASSWORD, audience="billing").access_token
    admin.call("SetAudiences", A.SetAudiencesRequest(name="alice", audiences=["authsvc"]))
    refused = code_of(lambda: h.login("alice", PASSWORD, audience="billing"))
    assert refused == grpc.StatusCode.PERMISSION_DENIED
    assert h.login("alice", PASSWORD).access_token  # the default audience is still allowed
    missing = A.SetAudiencesRequest(name="nobody", audiences=["authsvc"])
    assert admin.code("SetAudiences", missing) == grpc.StatusCode.NOT_FOUND


def test_reset_password_ends_sessions_and_only_the_new_password_works(admin: Admin) -> None:
    h = admin.h
    h.create_user("alice", PASSWORD)
    pair = h.login("alice", PASSWORD)
    request = A.ResetPasswordRequest(name="alice", new_password="new horse battery staple")
    assert admin.call("ResetPassword", request).sessions_ended == 1
    assert not validate(h, pair.access_token).valid
    assert code_of(lambda: h.login("alice", PASSWORD)) == grpc.StatusCode.UNAUTHENTICATED
    assert h.login("alice", "new horse battery staple")
    assert "new horse battery staple" not in repr(h.events.events)
    missing = A.ResetPasswordRequest(name="nobody", new_password="whatever-1")
    assert admin.code("ResetPassword", missing) == grpc.StatusCode.NOT_FOUND


def test_list_accounts_pages_in_a_stable_name_order(admin: Admin) -> None:
    h = admin.h
    for name in ("dave", "bob", "frank", "alice", "erin", "carol", "gina"):
        h.run(h.store.create_account(name, AccountKind.USER, "x", ("read",), h.clock()))
    pages: list[list[str]] = []
    token = ""
    for _ in range(10):  # bounded: 8 accounts in pages of 3
        page = admin.call("ListAccounts", A.ListAccountsRequest(page_size=3, page_token=token))
        pages.append([a.name for a in page.accounts])
        token = page.next_page_token
        if not token:
            break
        if len(pages) == 1:  # a name created between pages, before the cursor: not repeated
            h.run(h.store.create_account("aaron", AccountKind.USER, "x", (), h.clock()))
    assert pages == [["alice", "bob", "carol"], ["dave", "erin", "frank"], ["gina", "root"]]
    assert names(admin) == ["aaron", "alice", "bob", "carol", "dave", "erin", "frank", "gina",
                            "root"]  # fmt: skip
    big = admin.call("ListAccounts", A.ListAccountsRequest(page_size=5000))  # clamped to 1000
    assert len(big.accounts) == 9 and not big.next_page_token


def test_list_sessions_says_when_each_was_opened_and_refreshed(admin: Admin) -> None:
    h = admin.h
    h.create_user("alice", PASSWORD)
    secret = h.create_client("billing", scopes=("invoices",))
    opened = int(h.clock())
    first = h.login("alice", PASSWORD, scopes=["read"])
    second = h.login("alice", PASSWORD)
    ended = h.login("alice", PASSWORD)
    h.revoke(ended.refresh_token, auth_pb2.REVOKE_SCOPE_SESSION)
    h.clock.advance(100)
    h.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=second.refresh_token), timeout=10)
    service = h.login("billing", secret)

    listing = admin.call("ListSessions", A.ListSessionsRequest(name="alice"))
    by_id = {s.session_id: s for s in listing.sessions}
    assert set(by_id) == {first.session_id, second.session_id}  # the ended one is not live
    assert not listing.next_page_token
    s1, s2 = by_id[first.session_id], by_id[second.session_id]
    assert (s1.created, s1.last_refreshed, list(s1.scopes)) == (opened, 0, ["read"])
    assert (s2.created, s2.last_refreshed) == (opened, opened + 100)
    assert s1.audience == "authsvc" and s1.client_id == ""
    assert s1.refresh_expires_at > opened and s1.absolute_expires_at >= s1.refresh_expires_at
    (svc,) = admin.call("ListSessions", A.ListSessionsRequest(name="billing")).sessions
    assert (svc.session_id, svc.client_id) == (service.session_id, "billing")
    # Paged one at a time, in id order, every session exactly once.
    seen: list[str] = []
    token = ""
    for _ in range(5):
        page = admin.call(
            "ListSessions", A.ListSessionsRequest(name="alice", page_size=1, page_token=token)
        )
        seen += [s.session_id for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert seen == sorted(by_id)
    # Never a token or its digest on the wire.
    for secret_part in (first.refresh_token.split(".")[-1], first.access_token.split(".")[-1]):
        assert secret_part not in str(listing)
    stored = h.run(h.store._r.hget(f"authsvc:{{u:alice}}:s:{first.session_id}", "cur"))
    assert stored and str(stored) not in str(listing)
    nobody = A.ListSessionsRequest(name="nobody")
    assert admin.code("ListSessions", nobody) == grpc.StatusCode.NOT_FOUND


def test_end_one_session_by_id(admin: Admin) -> None:
    h = admin.h
    h.create_user("alice", PASSWORD)
    doomed, kept = h.login("alice", PASSWORD), h.login("alice", PASSWORD)
    admin.call("EndSession", A.EndSessionRequest(name="alice", session_id=doomed.session_id))
    assert validate(h, doomed.access_token).reason == auth_pb2.INVALID_REASON_REVOKED
    refresh = auth_pb2.RefreshRequest(refresh_token=doomed.refresh_token)
    assert code_of(lambda: h.stub.Refresh(refresh, timeout=10)) == grpc.StatusCode.UNAUTHENTICATED
    assert validate(h, kept.access_token).valid
    again = A.EndSessionRequest(name="alice", session_id=doomed.session_id)
    assert admin.code("EndSession", again) == grpc.StatusCode.NOT_FOUND
    revoked = [e for e in h.events.events if isinstance(e, events.Revoked)]
    assert revoked == [
        events.Revoked("alice", "127.0.0.1", doomed.session_id, "session", by="token:root")
    ]


def test_end_all_sessions_of_a_user(admin: Admin) -> None:
    h = admin.h
    h.create_user("alice", PASSWORD)
    h.create_user("bob", PASSWORD)
    alices = [h.login("alice", PASSWORD) for _ in range(3)]
    bob = h.login("bob", PASSWORD)
    ended = admin.call("EndAllSessions", A.EndAllSessionsRequest(name="alice")).sessions_ended
    assert ended == 3
    assert not any(validate(h, pair.access_token).valid for pair in alices)
    assert validate(h, bob.access_token).valid
    assert h.login("alice", PASSWORD)  # the account itself is untouched
    assert not admin.call("ListSessions", A.ListSessionsRequest(name="bob")).next_page_token
    nobody = A.EndAllSessionsRequest(name="nobody")
    assert admin.code("EndAllSessions", nobody) == grpc.StatusCode.NOT_FOUND


def test_rotate_publishes_a_new_key_that_signs_one_cache_period_later(admin: Admin) -> None:
    h = admin.h
    before = json.loads(h.stub.GetJwks(auth_pb2.GetJwksRequest()).jwks_json)["keys"]
    key = admin.call("RotateSigningKeys", A.RotateSigningKeysRequest())
    assert key.alg == "EdDSA"
    assert key.signs_from == pytest.approx(h.clock() + h.settings.jwks_cache_seconds, abs=1)
    after = json.loads(h.stub.GetJwks(auth_pb2.GetJwksRequest()).jwks_json)["keys"]
    assert [k["kid"] for k in after] == [before[0]["kid"], key.kid]
    rotated = [e for e in h.events.events if isinstance(e, events.KeyRotated)]
    previous = before[0]["kid"]
    assert rotated == [events.KeyRotated(key.kid, "127.0.0.1", "token:root", previous)]


def test_rotate_is_refused_while_keys_come_from_files(
    authsvc_server_factory: HarnessFactory, tmp_path: Path
) -> None:
    pem = tmp_path / "signing.pem"
    pem.write_bytes(private_key_pem(generate_private_key("EdDSA")))
    admin = Admin(authsvc_server_factory(signing_key_file=str(pem)))
    code = admin.code("RotateSigningKeys", A.RotateSigningKeysRequest())
    assert code == grpc.StatusCode.FAILED_PRECONDITION


BAD_INPUT: list[tuple[str, Any]] = [
    ("CreateUser", A.CreateUserRequest(username="", password="pw-1")),
    ("CreateUser", A.CreateUserRequest(username="bad name", password="pw-1")),
    ("CreateUser", A.CreateUserRequest(username="newbie", password="")),
    ("CreateUser", A.CreateUserRequest(username="newbie", password="p" * 1025)),
    ("CreateUser", A.CreateUserRequest(username="newbie", password="pw-1", scopes=["a b"])),
    ("CreateServiceAccount", A.CreateServiceAccountRequest(name="x\ny")),
    ("CreateServiceAccount", A.CreateServiceAccountRequest(name="svc", scopes=["s"] * 65)),
    ("DisableAccount", A.DisableAccountRequest(name="")),
    ("EnableAccount", A.EnableAccountRequest(name="n" * 129)),
    ("SetScopes", A.SetScopesRequest(name="alice", scopes=['quote"'])),
    ("SetAudiences", A.SetAudiencesRequest(name="alice", audiences=["has space"])),
    ("ResetPassword", A.ResetPasswordRequest(name="alice", new_password="")),
    ("ListAccounts", A.ListAccountsRequest(page_size=-1)),
    ("ListAccounts", A.ListAccountsRequest(page_token="garbage")),
    ("ListAccounts", A.ListAccountsRequest(page_token="x" * 5000)),
    ("ListSessions", A.ListSessionsRequest(name="")),
    ("ListSessions", A.ListSessionsRequest(name="alice", page_size=-5)),
    ("EndSession", A.EndSessionRequest(name="alice", session_id="")),
    ("EndSession", A.EndSessionRequest(name="alice", session_id="a:b")),
    ("EndSession", A.EndSessionRequest(name="alice", session_id="s" * 65)),
    ("EndAllSessions", A.EndAllSessionsRequest(name="a/b")),
]


def test_bad_input_is_invalid_argument_and_changes_nothing(admin: Admin) -> None:
    h = admin.h
    h.create_user("alice", PASSWORD)
    pair = h.login("alice", PASSWORD)
    for method, request in BAD_INPUT:
        assert admin.code(method, request) == grpc.StatusCode.INVALID_ARGUMENT, (method, request)
    assert names(admin) == ["alice", "root"]
    assert validate(h, pair.access_token).valid
    assert h.login("alice", PASSWORD)


def test_a_page_token_works_only_for_the_listing_that_made_it(admin: Admin) -> None:
    h = admin.h
    for name in ("alice", "bob"):
        h.create_user(name, PASSWORD)
        h.login(name, PASSWORD)
        h.login(name, PASSWORD)
    accounts = admin.call("ListAccounts", A.ListAccountsRequest(page_size=1)).next_page_token
    alices = admin.call(
        "ListSessions", A.ListSessionsRequest(name="alice", page_size=1)
    ).next_page_token
    assert accounts and alices
    crossed = [
        ("ListSessions", A.ListSessionsRequest(name="alice", page_token=accounts)),
        ("ListSessions", A.ListSessionsRequest(name="bob", page_token=alices)),
        ("ListAccounts", A.ListAccountsRequest(page_token=alices)),
    ]
    for method, request in crossed:
        assert admin.code(method, request) == grpc.StatusCode.INVALID_ARGUMENT


def test_reflection_lists_the_admin_service_and_health_is_unchanged(admin: Admin) -> None:
    h = admin.h
    db = ProtoReflectionDescriptorDatabase(h.channel)
    assert "authsvc.v1.AdminService" in set(db.get_services())
    assert db.FindFileContainingSymbol("authsvc.v1.AdminService").package == "authsvc.v1"
    health = health_pb2_grpc.HealthStub(h.channel)
    for service in ("", "authsvc.v1.AuthService"):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
