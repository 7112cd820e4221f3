"""`BaseTokenManager`: everything `TokenManager` and `AsyncTokenManager` share.

The managers differ only where one blocks and the other awaits: waiting for the refresh in
flight, the Login and Refresh calls, taking the store's lock, and the sleep between attempts.
The state and its decisions live in `session.TokenSession`, the steps of a refresh in
`plan.obtain`; this base holds the rest: construction, the public accessors, the running of a
plan (`PlanRun`), and what follows an attempt.
"""

from __future__ import annotations

import logging
import random as _random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from authsvc_client.errors import AuthClientError, AuthServiceUnavailable, TokenStoreUnavailable
from authsvc_client.plan import (
    LoadStored,
    LockStore,
    Login,
    Obtained,
    Plan,
    Refresh,
    SaveStored,
    Sleep,
    UnlockStore,
)
from authsvc_client.policy import DEFAULT_POLICY, RefreshPolicy
from authsvc_client.session import Fail, Lead, TokenSession, TokenState, Use, Wait
from authsvc_client.tokens import Credentials, Tokens
from authsvc_client.transport import (
    LockedTokenStore,
    TokensListener,
    TokenStore,
    notify,
    read_store,
    write_store,
)

_log = logging.getLogger(__name__)

TransportT = TypeVar("TransportT")
SleepT = TypeVar("SleepT")


class BaseTokenManager(Generic[TransportT, SleepT]):
    """The state, accessors and bookkeeping of a token manager; see `TokenManager`.

    Args:
        transport: Login and Refresh: an `AuthTransport` (blocking) or `AsyncAuthTransport`.
        credentials: Used to log in at first and whenever the refresh token is refused.
        tokens: A pair to start from.
        store: Shared persisted tokens.
        listeners: Hooks called with every new pair.
        policy: Refresh margins and backoff.
        clock: Monotonic seconds.
        random: Jitter source returning floats in [0, 1).
        sleep: Waits between retries; None for the runtime's own (`time.sleep`,
            `asyncio.sleep`).
    """

    def __init__(
        self,
        transport: TransportT,
        *,
        credentials: Credentials | None = None,
        tokens: Tokens | None = None,
        store: TokenStore | None = None,
        listeners: Sequence[TokensListener] = (),
        policy: RefreshPolicy = DEFAULT_POLICY,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        sleep: SleepT | None = None,
    ) -> None:
        self._transport = transport
        # Held around every use of the session, never across I/O; threads contend for it,
        # on an event loop it is always free. Reentrant: the blocking manager decides
        # under it and then records its flight.
        self._lock = threading.RLock()
        self._store = store
        self._listeners = list(listeners)
        self._clock = clock
        self._sleep: SleepT = sleep if sleep is not None else self._default_sleep()
        self._session = TokenSession(
            credentials=credentials, has_store=store is not None, policy=policy, random=random
        )
        initial = tokens if tokens is not None else read_store(store)
        if initial is not None:
            self._session.install(initial, clock())

    def _default_sleep(self) -> SleepT:
        """The runtime's own sleep."""
        raise NotImplementedError

    @property
    def tokens(self) -> Tokens | None:
        """The current pair, or None before the first login or after the session ended."""
        with self._lock:
            return self._session.tokens

    def state(self) -> TokenState:
        """How usable the current access token is right now."""
        with self._lock:
            return self._session.state(self._clock())

    def add_listener(self, listener: TokensListener) -> None:
        """Call `listener` with every new pair from now on."""
        with self._lock:
            self._listeners.append(listener)

    def set_tokens(self, tokens: Tokens) -> None:
        """Replace the current pair, e.g. after an interactive login.

        The store (if any) and the listeners are told, as for a refreshed pair.
        """
        with self._lock:
            self._session.install(tokens, self._clock())
        if self._store is not None:
            write_store(self._store, tokens)
        notify(self._listeners, tokens)

    def _decide(self, *, refresh_running: bool) -> str | Lead | Wait:
        """The access token to use now, or whether to lead or await a refresh.

        Raises:
            TokenUnavailable: A recent attempt failed and its backoff has not passed.
        """
        with self._lock:
            decision = self._session.decide(self._clock(), refresh_running=refresh_running)
        if isinstance(decision, Use):
            return decision.access_token
        if isinstance(decision, Fail):
            raise decision.error
        return decision

    def _rejected(self, access_token: str) -> bool:
        """Note that a server refused `access_token`; whether a new one is worth getting."""
        with self._lock:
            return self._session.reject(access_token, self._clock())

    def _failed(self, decision: Lead, error: AuthClientError) -> bool:
        """Record a failed attempt; True when the still-valid token stays in use instead.

        Only a transient failure leaves that token in use; a refused session ends it.
        """
        with self._lock:
            self._session.failed(error, self._clock())
        transient = isinstance(error, (AuthServiceUnavailable, TokenStoreUnavailable))
        if decision.fallback_is_valid and transient:
            _log.warning("token refresh failed; using the still-valid access token: %s", error)
            return True
        return False

    def _succeeded(self, decision: Lead, obtained: Obtained) -> None:
        """Install the pair a plan obtained; tell the listeners unless the store had it.

        The plan has already saved a new pair to the store, under the store's lock.
        """
        with self._lock:
            self._session.install(obtained.tokens, self._clock(), forced=decision.forced)
        if not obtained.adopted:
            notify(self._listeners, obtained.tokens)

    def _take_store_lock(self) -> LockedTokenStore:
        assert self._store is not None  # a plan asks for the lock only when there is a store
        return self._store.lock()


RemoteStep = Refresh | Login | LockStore | Sleep
"""The steps of a plan that block or await, so each manager performs them its own way."""


class PlanRun:
    """One run of a plan: performs its store steps and hands out the rest (`RemoteStep`).

    A manager loops: `next_step()`, perform that step (blocking or awaiting), then `answer()`
    with its result or `fail()` with its error, until `next_step()` returns None; the pair is
    then `obtained`. Leaving the `with` block releases the store's lock if the plan still
    holds it, however the run ends (an error, a cancelled task).
    """

    def __init__(self, plan: Plan) -> None:
        self._plan = plan
        self._held: LockedTokenStore | None = None
        self._step: RemoteStep | None = None
        self._result: Tokens | None = None
        self._error: AuthClientError | None = None
        self._obtained: Obtained | None = None

    def __enter__(self) -> PlanRun:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._release()
        self._plan.close()

    @property
    def obtained(self) -> Obtained:
        """The plan's result, once `next_step()` has returned None."""
        assert self._obtained is not None
        return self._obtained

    def answer(self, result: Tokens | LockedTokenStore | None) -> None:
        """The result of the step `next_step()` handed out."""
        if isinstance(self._step, LockStore):
            assert result is not None and not isinstance(result, Tokens)
            self._held = result
        else:
            assert result is None or isinstance(result, Tokens)
            self._result = result

    def fail(self, error: AuthClientError) -> None:
        """The error of the step `next_step()` handed out; it is thrown into the plan."""
        self._error = error

    def next_step(self) -> RemoteStep | None:
        """Resume the plan up to its next remote step; None when it has ended.

        Raises:
            AuthClientError: The plan failed.
        """
        while True:
            result, error = self._result, self._error
            self._result, self._error, self._step = None, None, None
            try:
                step = self._plan.send(result) if error is None else self._plan.throw(error)
            except StopIteration as stop:
                self._obtained = stop.value
                return None
            if isinstance(step, LoadStored):
                assert self._held is not None  # the plan reads the store only under its lock
                self._result = read_store(self._held)
            elif isinstance(step, SaveStored):
                assert self._held is not None
                write_store(self._held, step.tokens)
            elif isinstance(step, UnlockStore):
                self._release()
            else:
                self._step = step
                return step

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.release()
