"""`AsyncTokenManager`: the asyncio twin of `TokenManager`, with the same policy."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Awaitable, Callable

from authsvc_client.base_manager import BaseTokenManager, PlanRun, RemoteStep
from authsvc_client.errors import AuthClientError
from authsvc_client.plan import LockStore, Login, Obtained, Plan, Refresh
from authsvc_client.session import Lead
from authsvc_client.tokens import Tokens
from authsvc_client.transport import AsyncAuthTransport, LockedTokenStore


class AsyncTokenManager(BaseTokenManager[AsyncAuthTransport, Callable[[float], Awaitable[None]]]):
    """Holds the current access/refresh pair for asyncio code and refreshes it in time.

    Any number of tasks may await `access_token()` at once: at most one Refresh (or Login)
    runs, in a task of its own so that cancelling one caller does not cancel it for the
    others. One manager serves one event loop: the refresh in flight is a task of that
    loop, which callers on another loop cannot await. Arguments are as for `TokenManager`,
    except that `transport` is an `AsyncAuthTransport` and `sleep` (default
    `asyncio.sleep`) is awaitable. A `store`'s lock is taken in a worker thread, so the
    loop runs on while another process holds it; the store is then read and written on
    the loop (a small local file).
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
        with PlanRun(plan) as run:
            while (step := run.next_step()) is not None:
                try:
                    run.answer(await self._perform(step))
                except AuthClientError as exc:
                    run.fail(exc)
            return run.obtained

    async def _perform(self, step: RemoteStep) -> Tokens | LockedTokenStore | None:
        if isinstance(step, Refresh):
            return await self._transport.refresh(step.refresh_token)
        if isinstance(step, Login):
            return await self._transport.login(step.credentials)
        if isinstance(step, LockStore):
            return await _off_the_loop(self._take_store_lock)
        await self._sleep(step.seconds)
        return None


async def _off_the_loop(take: Callable[[], LockedTokenStore]) -> LockedTokenStore:
    """Take the store's lock in a thread of its own: the loop runs on while another
    process holds it. If the caller is cancelled meanwhile (the loop shutting down, say),
    the lock is released as soon as the thread has it, so it never outlives the caller."""
    taking: concurrent.futures.Future[LockedTokenStore] = concurrent.futures.Future()

    def run() -> None:
        if taking.set_running_or_notify_cancel():
            try:
                taking.set_result(take())
            except BaseException as exc:
                taking.set_exception(exc)

    threading.Thread(target=run, name="authsvc-store-lock", daemon=True).start()
    try:
        return await asyncio.wrap_future(taking)
    except asyncio.CancelledError:
        taking.add_done_callback(_release_if_taken)
        raise


def _release_if_taken(taking: concurrent.futures.Future[LockedTokenStore]) -> None:
    if not taking.cancelled() and taking.exception() is None:
        taking.result().release()
