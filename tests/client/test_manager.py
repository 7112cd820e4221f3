"""TokenManager policy with an injected clock and an in-process fake transport.

Everything here is also covered end to end against the real authsvc in test_manager_e2e.py.
"""

from __future__ import annotations

import asyncio
import fcntl
import threading
from pathlib import Path
from typing import IO

import pytest
from authsvc_client import (
    AsyncTokenManager,
    AuthServiceUnavailable,
    Credentials,
    FileTokenStore,
    ReauthenticationRequired,
    TokenManager,
    Tokens,
    TokenState,
    TokenStoreUnavailable,
)
from authsvc_client.store import HeldFileTokenStore

from tests.client.fakes import AsyncFakeAuthsvc, FakeAuthsvc, ManualClock

CREDS = Credentials.service_account("svc", "s3cret")


def make(
    fake: FakeAuthsvc, clock: ManualClock, sleeps: list[float] | None = None, **kwargs: object
) -> TokenManager:
    record = sleeps if sleeps is not None else []
    return TokenManager(
        fake,
        clock=clock,
        random=lambda: 0.0,
        sleep=record.append,
        **kwargs,  # type: ignore[arg-type]
    )


def test_logs_in_once_then_reuses_the_token_until_the_margin() -> None:
    fake, clock = FakeAuthsvc(lifetime=900), ManualClock()
    manager = make(fake, clock, credentials=CREDS)
    assert manager.access_token() == "at1"
    clock.advance(900 - 90 - 1)  # just before the 90 s margin
    assert manager.access_token() == "at1"
    assert manager.state() is TokenState.FRESH
    clock.advance(1)
    assert manager.state() is TokenState.STALE
    assert manager.access_token() == "at2"
    assert fake.calls == ["Login", "Refresh"]


def test_short_lived_token_is_not_refreshed_on_every_call() -> None:
    fake, clock = FakeAuthsvc(lifetime=3), ManualClock()
    manager = make(fake, clock, credentials=CREDS)
    for _ in range(10):
        manager.access_token()
        clock.advance(0.1)
    assert fake.calls == ["Login"]


def test_rotation_keeps_only_the_newest_refresh_token() -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    manager = make(fake, clock, tokens=Tokens("at0", "rt0", expires_in=60))
    fake.live.add("rt0")
    for _ in range(5):
        clock.advance(60)
        manager.access_token()
    assert fake.calls == ["Refresh"] * 5  # a retired token would have been rejected
    assert manager.tokens is not None and manager.tokens.refresh_token == "rt5"


def test_threads_share_one_refresh() -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    manager = make(fake, clock, credentials=CREDS)
    manager.access_token()
    clock.advance(61)  # expired: everybody must wait for the new token
    fake.gate = threading.Event()
    fake.entered.clear()
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(manager.access_token()))
               for _ in range(50)]  # fmt: skip
    for thread in threads:
        thread.start()
    assert fake.entered.wait(timeout=10)
    fake.gate.set()
    for thread in threads:
        thread.join(timeout=10)
    assert results == ["at2"] * 50
    assert fake.calls == ["Login", "Refresh"]


def test_rejected_refresh_logs_in_again_with_credentials() -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    manager = make(fake, clock, credentials=CREDS)
    manager.access_token()
    fake.live.clear()  # the session was revoked
    clock.advance(61)
    assert manager.access_token() == "at2"
    assert fake.calls == ["Login", "Refresh", "Login"]


def test_rejected_refresh_without_credentials_requires_reauthentication() -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    manager = make(fake, clock, tokens=Tokens("at0", "rt0", expires_in=60))
    clock.advance(61)
    with pytest.raises(ReauthenticationRequired):
        manager.access_token()
    with pytest.raises(ReauthenticationRequired):
        manager.access_token()
    assert fake.calls == ["Refresh"]  # the dead session is not tried again
    assert manager.tokens is None


def test_transient_failure_keeps_the_valid_token_and_backs_off() -> None:
    fake, clock = FakeAuthsvc(lifetime=900), ManualClock()
    manager = make(fake, clock, credentials=CREDS)
    manager.access_token()
    clock.advance(850)  # stale but valid
    fake.failures = [AuthServiceUnavailable("down")]
    assert manager.access_token() == "at1"
    assert manager.access_token() == "at1"  # within the backoff: no new attempt
    assert fake.calls == ["Login", "Refresh"]
    clock.advance(1)
    assert manager.access_token() == "at2"


def test_transient_failures_without_a_valid_token_are_retried_with_backoff() -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    sleeps: list[float] = []
    manager = make(fake, clock, sleeps, credentials=CREDS)
    manager.access_token()
    clock.advance(61)
    fake.failures = [AuthServiceUnavailable("down")] * 2
    assert manager.access_token() == "at2"
    assert sleeps == [0.25, 0.5]  # equal jitter at 0: half of 0.5 s, then of 1 s
    fake.failures = [AuthServiceUnavailable("down")] * 10
    clock.advance(61)
    with pytest.raises(AuthServiceUnavailable):
        manager.access_token()
    assert fake.calls.count("Refresh") == 3 + 4


def test_forced_refresh_once_then_rate_limited() -> None:
    fake, clock = FakeAuthsvc(lifetime=900), ManualClock()
    manager = make(fake, clock, credentials=CREDS)
    first = manager.access_token()
    second = manager.token_after_rejection(first)
    assert second == "at2"
    assert manager.token_after_rejection(second) is None  # a fresh forced token: no storm
    clock.advance(31)
    assert manager.token_after_rejection(second) == "at3"
    assert manager.token_after_rejection(first) == "at3"  # already replaced: no refresh
    assert fake.calls == ["Login", "Refresh", "Refresh"]


def test_listeners_and_store_see_every_new_pair(tmp_path: Path) -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    seen: list[Tokens] = []
    store = FileTokenStore(tmp_path / "tokens.json")
    manager = make(fake, clock, credentials=CREDS, store=store, listeners=[seen.append])
    manager.access_token()
    clock.advance(61)
    manager.access_token()
    assert [t.access_token for t in seen] == ["at1", "at2"]
    stored = store.load()
    assert stored is not None and stored.refresh_token == "rt2"


def test_rotation_by_another_process_is_adopted_instead_of_reusing(tmp_path: Path) -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    path = tmp_path / "tokens.json"
    one = make(fake, clock, credentials=CREDS, store=FileTokenStore(path))
    two = make(fake, clock, store=FileTokenStore(path))  # no credentials: must share
    one.access_token()
    assert two.access_token() == "at1"
    clock.advance(61)
    assert one.access_token() == "at2"
    clock.advance(1)
    assert two.access_token() == "at2"  # read from the store, not Refresh with rt1
    assert fake.calls == ["Login", "Refresh"]


class _LoggedInElsewhere(FileTokenStore):
    """A file store another process writes a new pair to before this one's `n`-th lock."""

    def __init__(self, path: Path, n: int, tokens: Tokens) -> None:
        super().__init__(path)
        self._locks, self._n, self._tokens = 0, n, tokens

    def lock(self) -> HeldFileTokenStore:
        self._locks += 1
        if self._locks == self._n:
            self.save(self._tokens)  # the other process, which had the lock just before
        return super().lock()


def test_after_a_refused_refresh_the_store_is_read_again_before_logging_in(
    tmp_path: Path,
) -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    other = Tokens("at-other", "rt-other", expires_in=60)
    # Lock 1: the first login. Lock 2: the refresh authsvc refuses. Lock 3: before logging in.
    store = _LoggedInElsewhere(tmp_path / "tokens.json", 3, other)
    manager = make(fake, clock, credentials=CREDS, store=store)
    manager.access_token()  # at1/rt1, saved
    fake.live.discard("rt1")  # the session ended (revoked, say); another process logs in
    clock.advance(61)
    assert manager.access_token() == "at-other"
    assert fake.calls == ["Login", "Refresh"]  # refused once, then adopted; no second Login


class _FlakyStore(FileTokenStore):
    """A file store whose next write fails (a full disk, a read-only mount)."""

    fail_next = False

    def _write(self, tokens: Tokens) -> None:  # under save() and lock().save() alike
        if self.fail_next:
            self.fail_next = False
            raise OSError("disk full")
        super()._write(tokens)


def test_a_store_that_missed_a_save_never_brings_back_a_retired_token(tmp_path: Path) -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    store = _FlakyStore(tmp_path / "tokens.json")
    manager = make(fake, clock, credentials=CREDS, store=store)
    manager.access_token()  # rt1, saved
    clock.advance(61)
    manager.access_token()  # rt2, saved
    store.fail_next = True
    clock.advance(61)
    assert manager.access_token() == "at3"  # rt3; the save failed, the store still says rt2
    clock.advance(61)
    assert manager.access_token() == "at4"
    refreshed_with = [c for c in fake.calls if c == "Refresh"]
    assert len(refreshed_with) == 3 and fake.calls.count("Login") == 1
    assert "rt3" not in fake.live and "rt4" in fake.live  # rt3 was sent, never rt2 again


def test_a_refused_refresh_token_is_not_sent_again_when_login_fails() -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    manager = make(fake, clock, credentials=CREDS)
    manager.access_token()
    fake.live.clear()  # authsvc ended the session
    fake.secret = "rotated"  # and the credentials no longer work
    clock.advance(61)
    for _ in range(3):
        with pytest.raises(Exception):  # noqa: B017 - refused login, any library error
            manager.access_token()
        clock.advance(3600)
    assert fake.calls.count("Refresh") == 1, fake.calls


def test_repeated_failures_raise_fresh_exceptions() -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    fake.secret = "other"
    manager = make(fake, clock, credentials=CREDS)
    errors = []
    for _ in range(3):
        with pytest.raises(Exception) as excinfo:  # noqa: B017
            manager.access_token()
        errors.append(excinfo.value)
    assert len({id(e) for e in errors}) == 3
    assert all(len(list(_frames(e))) < 20 for e in errors)


def _frames(exc: BaseException) -> list[object]:
    tb, out = exc.__traceback__, list[object]()
    while tb is not None:
        out.append(tb)
        tb = tb.tb_next
    return out


def test_a_stuck_store_lock_stops_refreshes_without_a_hang(tmp_path: Path) -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    store = FileTokenStore(tmp_path / "tokens.json", lock_timeout=0.2)
    manager = make(fake, clock, credentials=CREDS, store=store)
    assert manager.access_token() == "at1"
    with open(tmp_path / "tokens.json.lock", "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process, stuck while holding it
        clock.advance(50)  # due, still valid: kept in use
        assert manager.access_token() == "at1"
        clock.advance(20)  # expired: refreshing without the lock could reuse the token
        with pytest.raises(TokenStoreUnavailable, match="stayed locked"):
            manager.access_token()
    assert fake.calls == ["Login"]  # nothing was sent while the store was locked elsewhere
    clock.advance(1)  # past the backoff
    assert manager.access_token() == "at2"


class _WatchedStore(FileTokenStore):
    """A file store that tells when its lock is asked for, and when it is taken."""

    def __init__(self, path: Path, lock_timeout: float) -> None:
        super().__init__(path, lock_timeout=lock_timeout)
        self.lock_asked = threading.Event()
        self.lock_taken = threading.Event()

    def lock(self) -> HeldFileTokenStore:
        self.lock_asked.set()
        held = super().lock()
        self.lock_taken.set()
        return held


async def _refresh_behind_a_held_lock(
    store: _WatchedStore, fake: FakeAuthsvc, clock: ManualClock, holder: IO[str]
) -> asyncio.Future[str]:
    """An asyncio manager's refresh, started while another process holds the store, once it
    has asked for the lock."""
    manager = AsyncTokenManager(AsyncFakeAuthsvc(fake), credentials=CREDS, store=store, clock=clock)
    await manager.access_token()
    fcntl.flock(holder, fcntl.LOCK_EX)  # another process holds the store
    store.lock_asked.clear()
    store.lock_taken.clear()
    clock.advance(61)
    refreshing = asyncio.ensure_future(manager.access_token())
    assert await asyncio.to_thread(store.lock_asked.wait, 10)
    return refreshing


def test_the_asyncio_manager_waits_for_the_store_lock_off_the_loop(tmp_path: Path) -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    store = _WatchedStore(tmp_path / "tokens.json", lock_timeout=5)

    async def scenario(holder: IO[str]) -> str:
        refreshing = await _refresh_behind_a_held_lock(store, fake, clock, holder)
        assert not refreshing.done()  # waiting for the lock, and the loop runs on meanwhile
        fcntl.flock(holder, fcntl.LOCK_UN)  # the other process is done
        return await refreshing

    with open(tmp_path / "tokens.json.lock", "a") as holder:
        assert asyncio.run(scenario(holder)) == "at2"
    assert fake.calls == ["Login", "Refresh"]


def test_a_lock_taken_for_a_cancelled_asyncio_refresh_is_given_back(tmp_path: Path) -> None:
    fake, clock = FakeAuthsvc(lifetime=60), ManualClock()
    store = _WatchedStore(tmp_path / "tokens.json", lock_timeout=5)

    async def scenario(holder: IO[str]) -> None:
        await _refresh_behind_a_held_lock(store, fake, clock, holder)
        # Returning ends the loop: the refresh waiting for the lock is cancelled.

    with open(tmp_path / "tokens.json.lock", "a") as holder:
        asyncio.run(scenario(holder))
        fcntl.flock(holder, fcntl.LOCK_UN)
    assert store.lock_taken.wait(timeout=10)  # by the thread of the cancelled refresh
    with store.lock() as held:  # TokenStoreError after 5 s if it had been kept
        stored = held.load()
    assert stored is not None and stored.refresh_token == "rt1"
    assert fake.calls == ["Login"]
