"""`TokenManager`: a thread-safe holder of the current token pair that refreshes it in time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from authsvc_client.base_manager import BaseTokenManager, PlanRun, RemoteStep
from authsvc_client.errors import AuthClientError
from authsvc_client.plan import LockStore, Login, Obtained, Plan, Refresh
from authsvc_client.session import Lead
from authsvc_client.tokens import Tokens
from authsvc_client.transport import AuthTransport, LockedTokenStore


class _Flight:
    """One refresh in progress; callers that need its result wait on it."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: AuthClientError | None = None


class TokenManager(BaseTokenManager[AuthTransport, Callable[[float], None]]):
    """Holds the current access/refresh pair and refreshes it before it expires.

    Any number of threads may call `access_token()` at once: at most one of them runs a
    Refresh (or Login), the others either keep using a still-valid token or wait for that
    one result. The newest refresh token is always kept and a retired one is never sent.

    Args:
        transport: Login and Refresh, e.g. `authsvc_client.AuthsvcClient(channel)`.
        credentials: Used to log in at first and whenever the refresh token is refused.
            Without them the manager starts from `tokens` (or the store) and raises
            `ReauthenticationRequired` when the session ends.
        tokens: A pair to start from (e.g. from an interactive login).
        store: Persisted tokens, possibly shared by several processes (see
            `FileTokenStore`): read at start; each refresh holds its lock from reading it
            to saving the new pair, so those processes never present the same refresh
            token twice, whatever authsvc's grace window.
        listeners: Hooks called with every new pair this manager gets (not with a pair
            adopted from the store).
        policy: Refresh margins and backoff.
        clock: Monotonic seconds; expiry is `expires_in` from authsvc against this clock.
        random: Jitter source returning floats in [0, 1).
        sleep: Used between retries while authsvc is unreachable; default `time.sleep`.
    """

    _flight: _Flight | None = None

    def _default_sleep(self) -> Callable[[float], None]:
        return time.sleep

    def access_token(self) -> str:
        """A valid access token, refreshed first if it is due.

        Also the way to get a token for a call that is not gRPC (an HTTP `Authorization`
        header, say): call it before each use rather than keeping the result.

        Raises:
            TokenUnavailable: No valid token could be obtained; `ReauthenticationRequired`
                when the session ended and there are no credentials.
        """
        while True:
            with self._lock:
                decision = self._decide(refresh_running=self._flight is not None)
                if isinstance(decision, str):
                    return decision
                if self._flight is None:
                    self._flight = _Flight()
                flight = self._flight
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
        if not self._rejected(rejected):
            return None
        token = self.access_token()
        return None if token == rejected else token

    def _lead(self, decision: Lead, flight: _Flight) -> None:
        try:
            obtained = self._run(decision.plan)
        except AuthClientError as exc:
            if not self._failed(decision, exc):
                flight.error = exc
                raise
        else:
            self._succeeded(decision, obtained)
        finally:
            with self._lock:
                self._flight = None
            flight.done.set()

    def _run(self, plan: Plan) -> Obtained:
        with PlanRun(plan) as run:
            while (step := run.next_step()) is not None:
                try:
                    run.answer(self._perform(step))
                except AuthClientError as exc:
                    run.fail(exc)
            return run.obtained

    def _perform(self, step: RemoteStep) -> Tokens | LockedTokenStore | None:
        if isinstance(step, Refresh):
            return self._transport.refresh(step.refresh_token)
        if isinstance(step, Login):
            return self._transport.login(step.credentials)
        if isinstance(step, LockStore):
            return self._take_store_lock()
        self._sleep(step.seconds)
        return None
