"""`BaseTokenManager`: everything `TokenManager` and `AsyncTokenManager` share.

The managers differ only where one blocks and the other awaits: waiting for the refresh in
flight, the Login and Refresh calls, and the sleep between attempts. The state and its
decisions live in `session.TokenSession`, the steps of a refresh in `plan.obtain`; this base
holds the rest: construction, the public accessors, and what follows an attempt.
"""

from __future__ import annotations

import logging
import random as _random
import threading
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from authsvc_client.errors import AuthClientError, AuthServiceUnavailable
from authsvc_client.plan import Obtained
from authsvc_client.policy import DEFAULT_POLICY, RefreshPolicy
from authsvc_client.session import Fail, Lead, TokenSession, TokenState, Use, Wait
from authsvc_client.tokens import Credentials, Tokens
from authsvc_client.transport import TokensListener, TokenStore, notify, read_store

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
        if store is not None:
            self._listeners.insert(0, store.save)
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
        """Replace the current pair, e.g. after an interactive login; listeners are told."""
        with self._lock:
            self._session.install(tokens, self._clock())
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
        if decision.fallback_is_valid and isinstance(error, AuthServiceUnavailable):
            _log.warning("token refresh failed; using the still-valid access token: %s", error)
            return True
        return False

    def _succeeded(self, decision: Lead, obtained: Obtained) -> None:
        """Install the pair a plan obtained; tell the listeners unless the store had it."""
        with self._lock:
            self._session.install(obtained.tokens, self._clock(), forced=decision.forced)
        if not obtained.adopted:
            notify(self._listeners, obtained.tokens)

    def _load_stored(self) -> Tokens | None:
        return read_store(self._store)
