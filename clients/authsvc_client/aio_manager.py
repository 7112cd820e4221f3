"""`AsyncTokenManager`: the asyncio twin of `TokenManager`, with the same policy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from authsvc_client.base_manager import BaseTokenManager
from authsvc_client.errors import AuthClientError
from authsvc_client.plan import Action, LoadStored, Login, Obtained, Plan, Refresh
from authsvc_client.session import Lead
from authsvc_client.tokens import Tokens
from authsvc_client.transport import AsyncAuthTransport


class AsyncTokenManager(BaseTokenManager[AsyncAuthTransport, Callable[[float], Awaitable[None]]]):
    """Holds the current access/refresh pair for asyncio code and refreshes it in time.

    Any number of tasks may await `access_token()` at once: at most one Refresh (or Login)
    runs, in a task of its own so that cancelling one caller does not cancel it for the
    others. One manager serves one event loop: the refresh in flight is a task of that
    loop, which callers on another loop cannot await. Arguments are as for `TokenManager`,
    except that `transport` is an `AsyncAuthTransport` and `sleep` (default
    `asyncio.sleep`) is awaitable. A `store` is read and written synchronously (it is a
    small local file).
    """

    _flight: asyncio.Task[AuthClientError | None] | None = None

    def _default_sleep(self) -> Callable[[float], Awaitable[None]]:
        return asyncio.sleep

    async def access_token(self) -> str:
        """A valid access token, refreshed first if it is due; see `TokenManager.access_token`.

        Raises:
            TokenUnavailable: No valid token could be obtained; `ReauthenticationRequired`
                when the session ended and there are no credentials.
        """
        while True:
            # Deciding never awaits: the event loop serialises it with the flight's start.
            decision = self._decide(refresh_running=self._flight is not None)
            if isinstance(decision, str):
                return decision
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
        if not self._rejected(rejected):
            return None
        token = await self.access_token()
        return None if token == rejected else token

    async def _lead(self, decision: Lead) -> AuthClientError | None:
        try:
            obtained = await self._run(decision.plan)
        except AuthClientError as exc:
            return None if self._failed(decision, exc) else exc
        finally:
            self._flight = None
        self._succeeded(decision, obtained)
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
            return self._load_stored()
        await self._sleep(action.seconds)
        return None
