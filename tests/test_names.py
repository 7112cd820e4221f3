"""Account names: one canonical spelling (NFKC + case folding), hostile Unicode refused,
older accounts stored under other spellings still found."""

from __future__ import annotations

import grpc
import jwt
import pytest
from authsvc_api.v1 import auth_pb2

from authsvc import events
from authsvc.accounts import AccountAdmin
from authsvc.errors import AccountError, InvalidInput
from authsvc.names import MAX_SPELLING_LENGTH, canonical_name
from authsvc.store import AccountKind
from tests.harness import Harness, HarnessFactory

PASSWORD = "correct horse battery staple"


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("carol", "carol"),
        ("Carol", "carol"),
        ("CAROL", "carol"),
        ("\uff23\uff41\uff52\uff4f\uff4c", "carol"),  # full-width
        ("\u212aate", "kate"),  # KELVIN SIGN
        ("Stra\u00dfe", "strasse"),  # case folding, not lower()
        ("\ufb01le", "file"),  # ligature
        ("svc-billing_2@corp.example", "svc-billing_2@corp.example"),
    ],
)
def test_spellings_that_look_alike_have_one_canonical_name(spelling: str, canonical: str) -> None:
    assert canonical_name(spelling) == canonical


@pytest.mark.parametrize(
    "spelling",
    [
        "",
        "\ud800",  # a lone surrogate: not Unicode at all
        "alice\udcff",  # what a shell's undecodable byte becomes in Python
        "ali\u202ece",  # RIGHT-TO-LEFT OVERRIDE
        "ali\u200dce",  # ZERO WIDTH JOINER
        "al ice",
        "alice\n",
        "alice\x00",
        "\u0130stanbul",  # folds to i + COMBINING DOT ABOVE: not plain ASCII
        "caf\u00e9",
        "{u:alice}",
        "\uff5bu:alice\uff5d",  # full-width braces fold to a hash tag: still refused
        "a" * 129,
        "\ufdfa" * 8,  # each expands to 18 characters under NFKC
        "a" * (MAX_SPELLING_LENGTH + 1),
    ],
)
def test_hostile_or_malformed_names_are_invalid_input(spelling: str) -> None:
    with pytest.raises(InvalidInput) as excinfo:
        canonical_name(spelling)
    message = str(excinfo.value)
    assert spelling not in message or not spelling  # never echoed back
    message.encode("utf-8")  # and always printable as UTF-8


@pytest.fixture
def h(authsvc_server: Harness) -> Harness:
    return authsvc_server


def admin(h: Harness) -> AccountAdmin:
    return AccountAdmin(h.store, h.server._hasher, h.clock)


def test_look_alike_names_are_one_account(h: Harness) -> None:
    accounts = admin(h)
    h.run(accounts.add_user("Carol", PASSWORD, ["read"]))
    for spelling in ("carol", "CAROL", "\uff23\uff41\uff52\uff4f\uff4c"):
        with pytest.raises(AccountError, match="already exists"):
            h.run(accounts.add_user(spelling, "another password", ["read"]))
    assert [a.name for a in h.run(accounts.list())] == ["carol"]
    for spelling in ("carol", "Carol", "CAROL", "\uff43\uff41\uff52\uff4f\uff4c"):
        login = h.login(spelling, PASSWORD)
        claims = jwt.decode(login.access_token, options={"verify_signature": False})
        assert claims["sub"] == "carol"
    assert h.run(accounts.disable("CaRoL")) == 4


def test_every_spelling_counts_against_one_throttle(authsvc_server_factory: HarnessFactory) -> None:
    h = authsvc_server_factory(login_max_failures=3)
    h.create_user("carol", PASSWORD)
    for spelling in ("Carol", "CAROL", "cArOl"):
        with pytest.raises(grpc.RpcError) as excinfo:
            h.login(spelling, "wrong")
        assert excinfo.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as excinfo:
        h.login("carol", PASSWORD)
    assert excinfo.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    failed = [e.account for e in h.events.events if isinstance(e, events.LoginFailed)]
    assert failed == ["carol"] * 3  # audit names the account, not the spelling tried


@pytest.mark.parametrize(
    "username", ["ali\u202ece", "\u0130stanbul", "\uff5bu:alice\uff5d", "\ufdfa" * 8]
)
def test_hostile_names_at_login_are_invalid_argument(h: Harness, username: str) -> None:
    with pytest.raises(grpc.RpcError) as excinfo:
        h.login(username, PASSWORD)
    assert excinfo.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_lone_surrogates_reaching_the_domain_are_invalid_input(h: Harness) -> None:
    # gRPC cannot carry them (not UTF-8); the admin CLI can (undecodable argv bytes).
    with pytest.raises(InvalidInput):
        h.run(h.server.service.login("alice\udcff", PASSWORD, "", []))
    with pytest.raises(InvalidInput):
        h.run(admin(h).add_user("alice", "pass\udcffword", []))


def legacy(h: Harness, name: str, scopes: tuple[str, ...] = ("read",)) -> None:
    """An account as versions before canonical names stored it (spelling kept as given)."""
    pwhash = h.server._hasher.hash(PASSWORD)
    h.run(h.store.create_account(name, AccountKind.USER, pwhash, scopes, h.clock()))


def test_accounts_stored_under_older_spellings_keep_working(
    authsvc_server_factory: HarnessFactory,
) -> None:
    old = authsvc_server_factory()
    legacy(old, "Alice")
    legacy(old, "Bob")
    legacy(old, "bob")  # the look-alike pair the old rules let in
    with pytest.raises(grpc.RpcError):  # not yet indexed: "Alice" is canonically "alice"
        old.login("Alice", PASSWORD)
    new = authsvc_server_factory(shared_with=old)  # the upgraded instance indexes at start
    session = old.login("Alice", PASSWORD)  # keys and tokens under "Alice", as before
    for spelling in ("Alice", "alice", "ALICE"):
        claims = jwt.decode(
            new.login(spelling, PASSWORD).access_token, options={"verify_signature": False}
        )
        assert claims["sub"] == "Alice"  # the name its keys (and live tokens) carry
    assert new.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=session.refresh_token))
    with pytest.raises(AccountError, match="already exists"):
        new.run(admin(new).add_user("alice", PASSWORD, []))
    # A collision stays two accounts: the exact older spelling reaches it, any other the
    # account that owns the canonical name; the operator is told to resolve it.
    assert new.run(new.store.index_legacy_names()) == ["Bob"]
    for spelling, subject in (("Bob", "Bob"), ("bob", "bob"), ("BOB", "bob")):
        token = new.login(spelling, PASSWORD).access_token
        assert jwt.decode(token, options={"verify_signature": False})["sub"] == subject
    assert new.run(admin(new).get("ALICE")).name == "Alice"  # the admin API finds it too
    assert new.run(admin(new).disable("aLiCe")) >= 1
    account = new.run(new.store.get_account("Alice"))
    assert account is not None and account.disabled
