"""What the token manager needs from the outside world, as protocols.

The manager holds the refresh policy and nothing else; these small interfaces let it log in,
refresh and persist without knowing about gRPC or files. `rpc` provides the gRPC transports,
`store` the file store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from authsvc_client.errors import TokenStoreError
from authsvc_client.tokens import Credentials, Tokens

_log = logging.getLogger(__name__)

TokensListener = Callable[[Tokens], None]
"""A hook told about every new token pair (after Login or Refresh)."""


class AuthTransport(Protocol):
    """Blocking Login and Refresh.

    Implementations raise `RefreshTokenRejected` when the refresh token is unusable,
    `AuthServiceUnavailable` for transient failures, and other `TokenUnavailable` errors
    for the rest.
    """

    def login(self, credentials: Credentials) -> Tokens:
        """Log in and return a new token pair."""
        ...

    def refresh(self, refresh_token: str) -> Tokens:
        """Exchange `refresh_token` for a new pair; the old refresh token is retired."""
        ...


class AsyncAuthTransport(Protocol):
    """Login and Refresh for asyncio; the same contract as `AuthTransport`."""

    async def login(self, credentials: Credentials) -> Tokens:
        """Log in and return a new token pair."""
        ...

    async def refresh(self, refresh_token: str) -> Tokens:
        """Exchange `refresh_token` for a new pair; the old refresh token is retired."""
        ...


class LockedTokenStore(Protocol):
    """A token store held exclusively, across processes, until `release()`.

    A manager holds it from the read that decides whether to refresh until the new pair is
    saved, so processes sharing the store never present the same refresh token twice.
    """

    def load(self) -> Tokens | None:
        """The newest stored pair, or None when there is none."""
        ...

    def save(self, tokens: Tokens) -> None:
        """Replace the stored pair."""
        ...

    def release(self) -> None:
        """Let others have the store again; calling it again does nothing."""
        ...


class TokenStore(Protocol):
    """Persisted tokens, possibly shared with other processes."""

    def load(self) -> Tokens | None:
        """The newest stored pair, or None when there is none."""
        ...

    def save(self, tokens: Tokens) -> None:
        """Replace the stored pair."""
        ...

    def lock(self) -> LockedTokenStore:
        """Hold the store exclusively until the result's `release()`; blocks until then.

        Raises:
            TokenStoreError: The store could not be locked (e.g. within a timeout).
        """
        ...


def read_store(store: TokenStore | LockedTokenStore | None) -> Tokens | None:
    """The stored pair; None when there is no store, no pair, or the file is unreadable."""
    if store is None:
        return None
    try:
        return store.load()
    except TokenStoreError as exc:
        _log.warning("ignoring unreadable token store: %s", exc)
        return None


def write_store(store: TokenStore | LockedTokenStore, tokens: Tokens) -> None:
    """Save `tokens`; a failure is logged, not raised."""
    try:
        store.save(tokens)
    except Exception:
        # A failing save (e.g. a full disk) must not lose the new tokens in memory.
        _log.exception("saving the tokens to the store failed")


def notify(listeners: Iterable[TokensListener], tokens: Tokens) -> None:
    """Tell every listener about `tokens`; a failing listener is logged, not raised."""
    for listener in list(listeners):
        try:
            listener(tokens)
        except Exception:
            # A failing hook (e.g. a full disk) must not lose the new tokens in memory.
            _log.exception("token listener %r failed", listener)
