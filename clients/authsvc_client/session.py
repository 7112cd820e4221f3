"""The token manager's state and decisions, shared by the blocking and the asyncio manager.

Not thread-safe: the managers call it under their lock (or on their event loop). All times are
readings of the manager's monotonic clock.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import enum
import math
from collections.abc import Callable

from authsvc_client.errors import (
    AuthClientError,
    AuthServiceUnavailable,
    LoginThrottled,
    ReauthenticationRequired,
)
from authsvc_client.plan import Plan, obtain
from authsvc_client.policy import RefreshPolicy, backoff_delay, refresh_margin
from authsvc_client.tokens import Credentials, Tokens


class TokenState(enum.Enum):
    """How usable the current access token is."""

    FRESH = "fresh"
    """Valid and not yet due for refresh."""
    STALE = "stale"
    """Valid, but within the refresh margin: refresh before use, fall back to it on failure."""
    INVALID = "invalid"
    """Missing, expired, or refused by a server: a new one is needed before the call."""


@dataclasses.dataclass(frozen=True)
class Use:
    """Decision: send this access token."""

    access_token: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Wait:
    """Decision: another caller is refreshing; wait for its result."""


@dataclasses.dataclass(frozen=True)
class Lead:
    """Decision: run this plan to obtain new tokens; others will wait for it."""

    plan: Plan
    fallback_is_valid: bool
    forced: bool


@dataclasses.dataclass(frozen=True)
class Fail:
    """Decision: a recent attempt failed and its backoff has not passed; raise its error."""

    error: AuthClientError


Decision = Use | Wait | Lead | Fail


class TokenSession:
    """The current pair, when it is due, and what happened on the last attempts."""

    def __init__(
        self,
        *,
        credentials: Credentials | None,
        has_store: bool,
        policy: RefreshPolicy,
        random: Callable[[], float],
    ) -> None:
        self._credentials = credentials
        self._has_store = has_store
        self._policy = policy
        self._random = random
        self._tokens: Tokens | None = None
        self._expires_at = -math.inf
        self._refresh_at = -math.inf
        self._refresh_expires_at = math.inf
        self._obtained_at = -math.inf
        self._forced = False
        self._rejected = False
        self._failures = 0
        self._retry_at = -math.inf
        self._last_error: AuthClientError | None = None
        self._ended = False
        # Refresh tokens replaced or refused here, newest last (bounded): never sent again
        # and never adopted back from a store that missed a save.
        self._retired: collections.deque[str] = collections.deque(maxlen=64)

    @property
    def tokens(self) -> Tokens | None:
        """The current pair, if any."""
        return None if self._ended else self._tokens

    def state(self, now: float) -> TokenState:
        """Classify the current access token at time `now`."""
        if self._tokens is None or self._ended or self._rejected or now >= self._expires_at:
            return TokenState.INVALID
        if now >= self._refresh_at:
            return TokenState.STALE
        return TokenState.FRESH

    def install(self, tokens: Tokens, now: float, *, forced: bool = False) -> None:
        """Make `tokens`, received at `now`, the current pair."""
        margin = refresh_margin(tokens.full_lifetime, self._policy, self._random())
        if self._tokens is not None and self._tokens.refresh_token != tokens.refresh_token:
            self._retired.append(self._tokens.refresh_token)
        self._tokens = tokens
        self._expires_at = now + tokens.expires_in
        self._refresh_at = self._expires_at - margin
        self._refresh_expires_at = (
            math.inf if tokens.refresh_expires_in is None else now + tokens.refresh_expires_in
        )
        self._obtained_at = now
        self._forced = forced
        self._rejected = False
        self._failures = 0
        self._retry_at = -math.inf
        self._last_error = None
        self._ended = False

    def reject(self, access_token: str, now: float) -> bool:
        """Note that a server refused `access_token`; return whether a new one will be had.

        False means the refused token came from a forced refresh less than
        `forced_refresh_interval` ago: refreshing again would not help and could storm.
        """
        if self._tokens is None or self._tokens.access_token != access_token:
            return True
        if self._rejected:
            return True
        if self._forced and now - self._obtained_at < self._policy.forced_refresh_interval:
            return False
        self._rejected = True
        return True

    def decide(self, now: float, *, refresh_running: bool) -> Decision:
        """What a caller that wants an access token at `now` should do."""
        state = self.state(now)
        if state is TokenState.FRESH:
            assert self._tokens is not None
            return Use(self._tokens.access_token)
        if state is TokenState.STALE:
            assert self._tokens is not None
            if refresh_running or now < self._retry_at:
                return Use(self._tokens.access_token)
            return self._lead(now, fallback_is_valid=True)
        if refresh_running:
            return Wait()
        if self._last_error is not None and now < self._retry_at:
            # A copy: raising one stored exception again and again would grow its traceback.
            return Fail(copy.copy(self._last_error))
        return self._lead(now, fallback_is_valid=False)

    def failed(self, error: AuthClientError, now: float) -> None:
        """Record that obtaining tokens failed at `now`, to back off before the next try."""
        self._failures += 1
        self._last_error = error
        if isinstance(error, AuthServiceUnavailable):
            delay = backoff_delay(self._failures, self._policy, self._random())
        elif isinstance(error, LoginThrottled) and error.retry_after is not None:
            delay = error.retry_after
        elif isinstance(error, ReauthenticationRequired):
            # The session is over: never send its tokens again, and fail without an RPC
            # until new tokens arrive (from the store, or `set_tokens`).
            self._ended = True
            delay = 0.0
        else:
            delay = backoff_delay(self._failures, self._policy, self._random())
        self._retry_at = now + delay

    def _lead(self, now: float, *, fallback_is_valid: bool) -> Lead:
        known = self._tokens.refresh_token if self._tokens is not None else None
        usable = not self._ended and now < self._refresh_expires_at and known not in self._retired
        plan = obtain(
            known if usable else None,
            self._credentials,
            known_refresh_token=known,
            retired=tuple(self._retired),
            on_refused=self._retired.append,
            check_store=self._has_store,
            fallback_is_valid=fallback_is_valid,
            policy=self._policy,
            random=self._random,
        )
        return Lead(plan, fallback_is_valid=fallback_is_valid, forced=self._rejected)
