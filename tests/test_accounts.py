"""Account administration (AccountAdmin) over a real Redis: allowed audiences."""

from __future__ import annotations

import pytest

from authsvc import events
from authsvc.accounts import AccountAdmin
from authsvc.caller import LOCAL_OPERATOR
from authsvc.errors import AccountError, InvalidInput
from tests.harness import Harness

PASSWORD = "correct horse battery staple"


def test_set_audiences_stores_them_and_says_who_did(authsvc_server: Harness) -> None:
    h = authsvc_server
    sink = events.RecordingSink()
    admin = AccountAdmin(h.store, h.server._hasher, h.clock, sink)
    h.run(admin.add_user("dana", PASSWORD, ["read"]))
    h.run(admin.set_audiences("DANA", ["billing", "search", "billing"]))
    account = h.run(h.store.get_account("dana"))
    assert account is not None and account.audiences == ("billing", "search")
    h.run(admin.set_audiences("dana", []))  # back to the service-wide list
    account = h.run(h.store.get_account("dana"))
    assert account is not None and account.audiences == ()
    by = LOCAL_OPERATOR.source
    assert sink.events[-2:] == [events.AccountChanged("dana", by, "audiences_set", by)] * 2


@pytest.mark.parametrize("audiences", [["a b"], ["a,b"], [""], ["x" * 129], ["a"] * 65])
def test_bad_audiences_are_invalid_input(authsvc_server: Harness, audiences: list[str]) -> None:
    h = authsvc_server
    admin = AccountAdmin(h.store, h.server._hasher, h.clock)
    h.run(admin.add_user("dana", PASSWORD, []))
    with pytest.raises(InvalidInput):
        h.run(admin.set_audiences("dana", audiences))


def test_audiences_of_a_missing_account_is_an_account_error(authsvc_server: Harness) -> None:
    h = authsvc_server
    with pytest.raises(AccountError, match="no account"):
        h.run(AccountAdmin(h.store, h.server._hasher, h.clock).set_audiences("ghost", ["x"]))
