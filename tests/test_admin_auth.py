"""The administrator rule shared by the admin API and privileged Revokes, on a real server."""

from __future__ import annotations

import pytest
from authsvc_api.v1 import auth_pb2

from authsvc.admin_auth import Admin
from authsvc.caller import Caller
from authsvc.errors import CallerUnauthenticated, NotAuthorized
from tests.harness import Harness, HarnessFactory

PASSWORD = "correct horse battery staple"
ADMIN_SCOPES = ("read", "authsvc:admin")


def check(h: Harness, caller: Caller) -> Admin:
    return h.run(h.server.service.admins.require_admin(caller))


def test_a_live_token_with_the_admin_scope_is_an_administrator(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("root", PASSWORD, scopes=ADMIN_SCOPES)
    token = h.login("root", PASSWORD).access_token
    assert check(h, Caller(bearer_token=token)) == Admin("token:root")


def test_a_token_without_the_admin_scope_is_not(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("root", PASSWORD, scopes=ADMIN_SCOPES)
    token = h.login("root", PASSWORD, scopes=["read"]).access_token  # narrowed at login
    with pytest.raises(NotAuthorized):
        check(h, Caller(bearer_token=token))


def test_no_token_or_a_bad_one_is_unauthenticated(authsvc_server: Harness) -> None:
    h = authsvc_server
    with pytest.raises(CallerUnauthenticated):
        check(h, Caller(peer="ipv4:127.0.0.1:1"))
    with pytest.raises(CallerUnauthenticated):
        check(h, Caller(bearer_token="not.a.token"))


def test_a_revoked_admin_token_is_unauthenticated(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("root", PASSWORD, scopes=ADMIN_SCOPES)
    token = h.login("root", PASSWORD).access_token
    h.revoke(token, auth_pb2.REVOKE_SCOPE_TOKEN)
    with pytest.raises(CallerUnauthenticated):
        check(h, Caller(bearer_token=token))


def test_taking_the_scope_away_takes_admin_power_away_at_once(authsvc_server: Harness) -> None:
    h = authsvc_server
    h.create_user("root", PASSWORD, scopes=ADMIN_SCOPES)
    token = h.login("root", PASSWORD).access_token
    h.run(h.store.set_scopes("root", ["read"]))
    with pytest.raises(NotAuthorized):
        check(h, Caller(bearer_token=token))


def test_an_admin_token_for_another_audience_is_not_an_administrator(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(audiences=("billing",))
    h.create_user("root", PASSWORD, scopes=ADMIN_SCOPES)
    token = h.login("root", PASSWORD, audience="billing").access_token
    with pytest.raises(CallerUnauthenticated):
        check(h, Caller(bearer_token=token))


def test_an_allow_listed_certificate_identity_is_an_administrator(
    authsvc_server_factory: HarnessFactory,
) -> None:
    h = authsvc_server_factory(admin_identities=("spiffe://corp/ops",))
    assert check(h, Caller(tls_identities=("spiffe://corp/ops",))) == Admin(
        "mtls:spiffe://corp/ops"
    )
    with pytest.raises(CallerUnauthenticated):
        check(h, Caller(tls_identities=("spiffe://corp/orders",)))
