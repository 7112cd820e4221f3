"""The gate in front of every password check.

A login first takes a ticket in this process's `FairQueue` (RESOURCE_EXHAUSTED at once
when there is no place for its source). Then its attempt is counted, before the password
is checked, against three failure budgets in Redis, one after another: the account name,
the caller's source (mTLS identity, else peer address), and all logins together.
Each budget lives in its own Redis Cluster slot and is changed by its own single-slot
script; every budget the attempt passes holds a place for it until the attempt is settled,
so parallel guesses all count before any of them is checked, whatever the order.

* A budget whose confirmed failures are used up throttles: `LoginThrottled` with the time
  to wait (and any places already taken are given back).
* A budget whose remaining places are all held by attempts in flight is busy: the places
  are given back and the login waits for an attempt to settle (woken at once by a local
  settle, else polling), then tries again, for at most `login_wait_seconds`.
* After the check the attempt is settled: a right password gives every place back (and
  resets the name's count), a wrong one (or an unknown result: the call was cancelled
  mid-check) is one more failure everywhere, a login that never reached the check gives
  the places back. A place whose lease ends unsettled (its process died) is a failure.

Throttles seen are remembered locally until they end, so a caller hammering a throttled
source, name or the global budget is refused without a Redis round trip (never admitted
by memory: a throttle in Redis only ever ends later than remembered).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from authsvc import events
from authsvc.clock import Clock
from authsvc.config import Settings
from authsvc.errors import LoginBusy, LoginThrottled, StoreUnavailable
from authsvc.events import ShedReason, ThrottleScope
from authsvc.fair_queue import FairQueue, Ticket
from authsvc.store import (
    Account,
    Admission,
    AttemptOutcome,
    FailureBudget,
    NameThrottle,
    RedisStore,
)

log = logging.getLogger(__name__)

#: How long a counted attempt may stay unsettled before it counts as a failure: far longer
#: than a check waits in the queue and runs.
ATTEMPT_LEASE_SECONDS = 60.0
_FIRST_PAUSE = 0.02
_LONGEST_PAUSE = 0.5
_THROTTLES_REMEMBERED = 10_000
_BUSY_RETRY_AFTER = 1.0
_TURNS_PER_THREAD = 2


class Attempt:
    """One login attempt counted against every budget; settled when the gate's block ends."""

    def __init__(
        self,
        guard: LoginGuard,
        name: str,
        source: str,
        attempt_id: str,
        budgets: list[FailureBudget],
        account: Account | None,
        ticket: Ticket,
    ) -> None:
        self.name = name
        self.source = source
        self.account = account
        self._id = attempt_id
        self._guard = guard
        self._budgets = budgets
        self._ticket = ticket
        self._checked = False
        self._passed = False

    @contextlib.asynccontextmanager
    async def password_check(self) -> AsyncIterator[None]:
        """Hold a hashing worker for the block (round robin between sources).

        Raises:
            LoginBusy: another source took this login's place before its turn came.
        """
        try:
            async with self._ticket.turn():
                self._checked = True  # from here a cancellation may hide a failure
                yield
        except LoginBusy:
            if self._checked:
                raise
            self._guard._shed(self.name, self.source, ShedReason.EVICTED)
            raise

    def passed(self) -> None:
        """The password was right: the attempt gives its places back."""
        self._passed = True

    @property
    def outcome(self) -> AttemptOutcome:
        """How the attempt ended, as far as it went."""
        if self._passed:
            return AttemptOutcome.PASSED
        return AttemptOutcome.FAILED if self._checked else AttemptOutcome.ABANDONED

    async def _settle(self) -> None:
        await self._guard._settle(self.name, self._id, self._budgets, self.outcome, True)


class LoginGuard:
    """The per-source, global and per-name failure budgets and the fair queue of checks."""

    def __init__(
        self, settings: Settings, store: RedisStore, clock: Clock, sink: events.EventSink
    ) -> None:
        self._store = store
        self._clock = clock
        self._events = sink
        # Two turns per hashing thread: one check hashing, the next already handed over, so
        # a thread never idles waiting for a busy event loop to start the next check (the
        # price: a newcomer's check may wait for one more check than the threads run).
        self.queue = FairQueue(settings.login_queue_size, _TURNS_PER_THREAD * settings.hash_threads)
        self._throttle = NameThrottle(
            settings.login_max_failures,
            int(settings.login_throttle_base_seconds * 1000),
            int(settings.login_throttle_max_seconds * 1000),
        )
        self._source_limit = settings.login_source_max_failures
        self._source_window_ms = int(settings.login_source_window_seconds * 1000)
        self._everyone = FailureBudget.of_everyone(
            settings.login_global_max_failures, int(settings.login_global_window_seconds * 1000)
        )
        self._wait_seconds = settings.login_wait_seconds
        self._waiting: dict[str, collections.deque[asyncio.Future[None]]] = {}
        self._throttled: collections.OrderedDict[tuple[ThrottleScope, str], float] = (
            collections.OrderedDict()
        )
        self._settling: set[asyncio.Task[None]] = set()

    @contextlib.asynccontextmanager
    async def attempt(self, name: str, source: str) -> AsyncIterator[Attempt]:
        """Admit and count one login attempt; settle it when the block ends.

        Raises:
            LoginBusy: no place in the queue, or the budgets stayed busy too long.
            LoginThrottled: a budget's failures are used up (its scope is in the event).
            StoreUnavailable: Redis could not count the attempt.
        """
        try:
            ticket = self.queue.admit(source)
        except LoginBusy:
            self._shed(name, source, ShedReason.QUEUE_FULL)
            raise
        with ticket:
            attempt = await self._begin(name, source, ticket)
            try:
                yield attempt
            finally:
                await attempt._settle()

    async def _begin(self, name: str, source: str, ticket: Ticket) -> Attempt:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._wait_seconds
        pause = _FIRST_PAUSE
        budget = FailureBudget.of_source(source, self._source_limit, self._source_window_ms)
        woken_for: str | None = None
        while True:
            if ticket.evicted:
                self._shed(name, source, ShedReason.EVICTED)
                raise LoginBusy(_BUSY_RETRY_AFTER)
            try:
                counted = await self._count(name, source, budget, ticket)
            except LoginThrottled:
                # Everyone waiting for a place in these budgets learns of the throttle now.
                for key in (_name_key(name), budget.tag, self._everyone.tag):
                    self._wake(key, everyone=True)
                raise
            if isinstance(counted, Attempt):
                return counted
            if woken_for is not None and woken_for != counted:
                self._wake(woken_for)  # the place it was woken for is free: pass it on
            remaining = deadline - loop.time()
            if remaining <= 0:
                self._shed(name, source, ShedReason.BUSY)
                raise LoginBusy(_BUSY_RETRY_AFTER)
            woken = await self._wait_for_place(counted, min(pause, remaining))
            woken_for = counted if woken else None
            pause = min(2 * pause, _LONGEST_PAUSE)

    async def _wait_for_place(self, key: str, timeout: float) -> bool:
        """Wait until an attempt in budget `key` settles in this process (True), or for
        `timeout` (False: attempts of other processes settle unseen, so poll)."""
        waiters = self._waiting.setdefault(key, collections.deque())
        place = asyncio.get_running_loop().create_future()
        waiters.append(place)
        try:
            await asyncio.wait_for(place, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            if not place.done() or place.cancelled():
                with contextlib.suppress(ValueError):
                    waiters.remove(place)
            if not waiters and self._waiting.get(key) is waiters:
                del self._waiting[key]

    def _wake(self, key: str, everyone: bool = False) -> None:
        """Wake the longest waiter for a place in `key` (or all of them)."""
        waiters = self._waiting.get(key)
        while waiters:
            place = waiters.popleft()
            if not place.done():
                place.set_result(None)
                if not everyone:
                    break
        if waiters is not None and not waiters:
            del self._waiting[key]

    async def _count(
        self, name: str, source: str, budget: FailureBudget, ticket: Ticket
    ) -> Attempt | str:
        """Count the attempt against every budget; returns it, or the key of a busy budget
        to wait on (every place taken so far given back).

        Raises:
            LoginThrottled: from memory or from Redis, with every place given back.
        """
        now = self._clock()
        self._refuse_if_remembered(name, source, now)
        attempt_id = secrets.token_urlsafe(12)
        now_ms = int(now * 1000)
        lease_ms = now_ms + int(ATTEMPT_LEASE_SECONDS * 1000)
        # The name first: a busy name (a fleet logging in to one account) is the usual wait,
        # and its waiters then cost one round trip per wake-up, holding nothing elsewhere.
        taken: list[FailureBudget] = []
        name_held = True  # from the call on: a call that failed may still have counted
        try:
            gate = await self._store.begin_login(name, attempt_id, now_ms, lease_ms, self._throttle)
            if gate.admission is not Admission.OPEN:
                name_held = False
                if gate.admission is Admission.THROTTLED:
                    retry_ms = gate.retry_after_ms
                    self._refuse(ThrottleScope.ACCOUNT, name, name, source, now, retry_ms)
                return _name_key(name)
            for scope, key, b in (
                (ThrottleScope.SOURCE, source, budget),
                (ThrottleScope.GLOBAL, "", self._everyone),
            ):
                taken.append(b)
                admission, retry_ms = await self._store.begin_budget(
                    b, attempt_id, now_ms, lease_ms
                )
                if admission is Admission.OPEN:
                    continue
                taken.pop()
                await self._settle(name, attempt_id, taken, AttemptOutcome.ABANDONED, True)
                taken, name_held = [], False
                if admission is Admission.THROTTLED:
                    self._refuse(scope, key, name, source, now, retry_ms)
                return b.tag
        except BaseException:
            if taken or name_held:
                await self._settle(name, attempt_id, taken, AttemptOutcome.ABANDONED, name_held)
            raise
        return Attempt(self, name, source, attempt_id, taken, gate.account, ticket)

    async def _settle(
        self,
        name: str,
        attempt_id: str,
        budgets: list[FailureBudget],
        outcome: AttemptOutcome,
        with_name: bool,
    ) -> None:
        """Settle the attempt in every budget it holds, even if the caller is cancelled
        meanwhile; then wake the longest waiter for a place in each. A Redis failure here
        is logged: the places' leases end, counting the attempt as a failure."""
        now_ms = int(self._clock() * 1000)
        steps: list[Coroutine[Any, Any, None]] = [
            self._store.settle_budget(b, attempt_id, now_ms, outcome) for b in budgets
        ]
        keys = [b.tag for b in budgets]
        if with_name:
            steps.append(
                self._store.settle_login(name, attempt_id, now_ms, outcome, self._throttle)
            )
            keys.append(_name_key(name))
        if not steps:
            return
        task = asyncio.ensure_future(self._settle_all(steps, keys))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)
        await asyncio.shield(task)

    async def _settle_all(self, steps: list[Coroutine[Any, Any, None]], keys: list[str]) -> None:
        results = await asyncio.gather(*steps, return_exceptions=True)
        for result in results:
            if isinstance(result, StoreUnavailable):
                log.warning("login attempt not settled", extra={"event": "settle_failed"})
            elif isinstance(result, BaseException):
                raise result
        # One place came free (or, after a failure, a throttle may have started): the
        # longest waiter looks; a herd would only cost a round trip each.
        for key in keys:
            self._wake(key)

    def _refuse_if_remembered(self, name: str, source: str, now: float) -> None:
        for scope, key in (
            (ThrottleScope.SOURCE, source),
            (ThrottleScope.GLOBAL, ""),
            (ThrottleScope.ACCOUNT, name),
        ):
            until = self._throttled.get((scope, key))
            if until is None:
                continue
            if until > now:
                self._refuse(scope, key, name, source, now, int((until - now) * 1000))
            del self._throttled[(scope, key)]

    def _refuse(
        self, scope: ThrottleScope, key: str, name: str, source: str, now: float, retry_ms: int
    ) -> None:
        """Remember the throttle, emit the event and raise it."""
        self._throttled[(scope, key)] = now + retry_ms / 1000
        self._throttled.move_to_end((scope, key))
        if len(self._throttled) > _THROTTLES_REMEMBERED:
            self._throttled.popitem(last=False)
        throttled = LoginThrottled(retry_ms / 1000)
        self._events.emit(events.LoginThrottled(name, source, throttled.retry_after, scope))
        raise throttled

    def _shed(self, name: str, source: str, reason: ShedReason) -> None:
        log.info("login shed", extra={"event": "login_shed"})
        self._events.emit(events.LoginShed(name, source, reason))


def _name_key(name: str) -> str:
    return "name:" + name
