"""`TokenManager`: a thread-safe holder of the current token pair that refreshes it in time."""

from __future__ import annotations

import logging
import random as _random
import threading
import time
from collections.abc import Callable, Sequence

from authsvc_client.errors import AuthClientError, AuthServiceUnavailable
from authsvc_client.plan import Action, LoadStored, Login, Obtained, Plan, Refresh
from authsvc_client.policy import DEFAULT_POLICY, RefreshPolicy
from authsvc_client.session import Fail, Lead, TokenSession, TokenState, Use
from authsvc_client.tokens import Credentials, Tokens
from authsvc_client.transport import (
    AuthTransport,
    TokensListener,
    TokenStore,
    notify,
    read_store,
)

_log = logging.getLogger(__name__)


class _Flight:
    """One refresh in progress; callers that need its result wait on it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: AuthClientError | None = None


class TokenManager:
    """Holds the current access/refresh pair and refreshes it before it expires.

    Any number of threads may call `access_token()` at once: at most one of them runs a
    Refresh (or Login), the others either keep using a still-valid token or wait for that
    one result. The newest refresh token is always kept and a retired one is never sent.

    Args:
        transport: Login and Refresh, e.g. `authsvc_client.GrpcAuthTransport(channel)`.
        credentials: Used to log in at first and whenever the refresh token is refused.
            Without them the manager starts from `tokens` (or the store) and raises
            `ReauthenticationRequired` when the session ends.
        tokens: A pair to start from (e.g. from an interactive login).
        store: Shared persisted tokens: read at start and before each refresh, written on
            every change (see `FileTokenStore`).
        listeners: Hooks called with every new pair.
        policy: Refresh margins and backoff.
        clock: Monotonic seconds; expiry is `expires_in` from authsvc against this clock.
        random: Jitter source returning floats in [0, 1).
        sleep: Used between retries while authsvc is unreachable.
    """

    def __init__(
        self,
        transport: AuthTransport,
        *,
        credentials: Credentials | None = None,
        tokens: Tokens | None = None,
        store: TokenStore | None = None,
        listeners: Sequence[TokensListener] = (),
        policy: RefreshPolicy = DEFAULT_POLICY,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._transport = transport
        self._store = store
        self._listeners = list(listeners)
        if store is not None:
            self._listeners.insert(0, store.save)
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._flight: _Flight | None = None
        self._session = TokenSession(
            credentials=credentials, has_store=store is not None, policy=policy, random=random
        )
        initial = tokens if tokens is not None else read_store(store)
        if initial is not None:
            self._session.install(initial, clock())

    @property
    def tokens(self) -> Tokens | None:
        """The current pair, or None before the first login or after the session ended."""
        with self._cond:
            return self._session.tokens

    def state(self) -> TokenState:
        """How usable the current access token is right now."""
        with self._cond:
            return self._session.state(self._clock())

    def add_listener(self, listener: TokensListener) -> None:
        """Call `listener` with every new pair from now on."""
        with self._cond:
            self._listeners.append(listener)

    def set_tokens(self, tokens: Tokens) -> None:
        """Replace the current pair, e.g. after an interactive login; listeners are told."""
        with self._cond:
            self._session.install(tokens, self._clock())
        notify(self._listeners, tokens)

    def access_token(self) -> str:
        """A valid access token, refreshed first if it is due.

        Raises:
            TokenUnavailable: No valid token could be obtained; `ReauthenticationRequired`
                when the session ended and there are no credentials.
        """
        while True:
            with self._cond:
                running = self._flight is not None
                decision = self._session.decide(self._clock(), refresh_running=running)
                if isinstance(decision, Use):
                    return decision.access_token
                if isinstance(decision, Fail):
                    raise decision.error
                flight = self._flight
                if flight is None:
                    assert isinstance(decision, Lead)
                    flight = self._flight = _Flight()
            if isinstance(decision, Lead):
                self._lead(decision, flight)
            else:
                flight.done.wait()
                if flight.error is not None:
                    raise flight.error

    def token_after_rejection(self, rejected: str) -> str | None:
        """A new access token to retry with after a server refused `rejected`, or None.

        None means retrying would not help: the refused token was itself just obtained by
        such a forced refresh. Concurrent callers refused with the same token share one
        refresh.

        Raises:
            TokenUnavailable: As for `access_token`.
        """
        with self._cond:
            if not self._session.reject(rejected, self._clock()):
                return None
        token = self.access_token()
        return None if token == rejected else token

    def _lead(self, decision: Lead, flight: _Flight) -> None:
        try:
            obtained = self._run(decision.plan)
        except AuthClientError as exc:
            # Only a transient failure leaves the still-valid token in use; a refused
            # session ends it.
            keep = decision.fallback_is_valid and isinstance(exc, AuthServiceUnavailable)
            with self._cond:
                self._session.failed(exc, self._clock())
                if not keep:
                    flight.error = exc
                self._finish(flight)
            if not keep:
                raise
            _log.warning("token refresh failed; using the still-valid access token: %s", exc)
            return
        except BaseException:
            with self._cond:
                self._finish(flight)
            raise
        with self._cond:
            self._session.install(obtained.tokens, self._clock(), forced=decision.forced)
        try:
            if not obtained.adopted:
                notify(self._listeners, obtained.tokens)
        finally:
            with self._cond:
                self._finish(flight)

    def _finish(self, flight: _Flight) -> None:
        self._flight = None
        flight.done.set()

    def _run(self, plan: Plan) -> Obtained:
        result: Tokens | None = None
        error: AuthClientError | None = None
        while True:
            try:
                action = plan.send(result) if error is None else plan.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            result, error = None, None
            try:
                result = self._perform(action)
            except AuthClientError as exc:
                error = exc

    def _perform(self, action: Action) -> Tokens | None:
        if isinstance(action, Refresh):
            return self._transport.refresh(action.refresh_token)
        if isinstance(action, Login):
            return self._transport.login(action.credentials)
        if isinstance(action, LoadStored):
            return read_store(self._store)
        self._sleep(action.seconds)
        return None
