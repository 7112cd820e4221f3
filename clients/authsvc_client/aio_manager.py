"""`AsyncTokenManager`: the asyncio twin of `TokenManager`, with the same policy."""

from __future__ import annotations

import asyncio
import logging
import random as _random
import time
from collections.abc import Awaitable, Callable, Sequence

from authsvc_client.errors import AuthClientError, AuthServiceUnavailable
from authsvc_client.plan import Action, LoadStored, Login, Obtained, Plan, Refresh
from authsvc_client.policy import DEFAULT_POLICY, RefreshPolicy
from authsvc_client.session import Fail, Lead, TokenSession, TokenState, Use
from authsvc_client.tokens import Credentials, Tokens
from authsvc_client.transport import (
    AsyncAuthTransport,
    TokensListener,
    TokenStore,
    notify,
    read_store,
)

_log = logging.getLogger(__name__)


class AsyncTokenManager:
    """Holds the current access/refresh pair for asyncio code and refreshes it in time.

    Any number of tasks may await `access_token()` at once: at most one Refresh (or Login)
    runs, in a task of its own so that cancelling one caller does not cancel it for the
    others. Use one manager per event loop. Arguments are as for `TokenManager`, except
    that `transport` is an `AsyncAuthTransport` and `sleep` is awaitable. A `store` is
    read and written synchronously (it is a small local file).
    """

    def __init__(
        self,
        transport: AsyncAuthTransport,
        *,
        credentials: Credentials | None = None,
        tokens: Tokens | None = None,
        store: TokenStore | None = None,
        listeners: Sequence[TokensListener] = (),
        policy: RefreshPolicy = DEFAULT_POLICY,
        clock: Callable[[], float] = time.monotonic,
        random: Callable[[], float] = _random.random,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._transport = transport
        self._store = store
        self._listeners = list(listeners)
        if store is not None:
            self._listeners.insert(0, store.save)
        self._clock = clock
        self._sleep = sleep
        self._flight: asyncio.Task[AuthClientError | None] | None = None
        self._session = TokenSession(
            credentials=credentials, has_store=store is not None, policy=policy, random=random
        )
        initial = tokens if tokens is not None else read_store(store)
        if initial is not None:
            self._session.install(initial, clock())

    @property
    def tokens(self) -> Tokens | None:
        """The current pair, or None before the first login or after the session ended."""
        return self._session.tokens

    def state(self) -> TokenState:
        """How usable the current access token is right now."""
        return self._session.state(self._clock())

    def add_listener(self, listener: TokensListener) -> None:
        """Call `listener` with every new pair from now on."""
        self._listeners.append(listener)

    def set_tokens(self, tokens: Tokens) -> None:
        """Replace the current pair, e.g. after an interactive login; listeners are told."""
        self._session.install(tokens, self._clock())
        notify(self._listeners, tokens)

    async def access_token(self) -> str:
        """A valid access token, refreshed first if it is due.

        Raises:
            TokenUnavailable: No valid token could be obtained; `ReauthenticationRequired`
                when the session ended and there are no credentials.
        """
        while True:
            # Deciding never awaits, so no lock is needed: the event loop serialises it.
            running = self._flight is not None
            decision = self._session.decide(self._clock(), refresh_running=running)
            if isinstance(decision, Use):
                return decision.access_token
            if isinstance(decision, Fail):
                raise decision.error
            if isinstance(decision, Lead):
                self._flight = asyncio.get_running_loop().create_task(self._lead(decision))
            assert self._flight is not None
            error = await asyncio.shield(self._flight)
            if error is not None:
                raise error

    async def token_after_rejection(self, rejected: str) -> str | None:
        """A new access token to retry with after a server refused `rejected`, or None.

        See `TokenManager.token_after_rejection`.
        """
        if not self._session.reject(rejected, self._clock()):
            return None
        token = await self.access_token()
        return None if token == rejected else token

    async def _lead(self, decision: Lead) -> AuthClientError | None:
        try:
            obtained = await self._run(decision.plan)
        except AuthClientError as exc:
            self._session.failed(exc, self._clock())
            if decision.fallback_is_valid and isinstance(exc, AuthServiceUnavailable):
                _log.warning("token refresh failed; using the still-valid access token: %s", exc)
                return None
            return exc
        finally:
            self._flight = None
        self._session.install(obtained.tokens, self._clock(), forced=decision.forced)
        if not obtained.adopted:
            notify(self._listeners, obtained.tokens)
        return None

    async def _run(self, plan: Plan) -> Obtained:
        result: Tokens | None = None
        error: AuthClientError | None = None
        while True:
            try:
                action = plan.send(result) if error is None else plan.throw(error)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
            result, error = None, None
            try:
                result = await self._perform(action)
            except AuthClientError as exc:
                error = exc

    async def _perform(self, action: Action) -> Tokens | None:
        if isinstance(action, Refresh):
            return await self._transport.refresh(action.refresh_token)
        if isinstance(action, Login):
            return await self._transport.login(action.credentials)
        if isinstance(action, LoadStored):
            return read_store(self._store)
        await self._sleep(action.seconds)
        return None
