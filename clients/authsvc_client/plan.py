"""How to obtain a new token pair, written once for both the blocking and the asyncio manager.

`obtain` is a generator that yields the I/O it needs (`LockStore`, `LoadStored`, `SaveStored`,
`UnlockStore`, `Refresh`, `Login`, `Sleep`) and receives the results; the managers run it with
blocking calls or with `await`. Errors from an action are thrown back into the generator at
the `yield`.

With a shared store, each attempt holds the store's exclusive lock from the read that
decides whether to refresh until the new pair is saved: another process sharing the store
either sees the new pair or waits, so no two ever present the same refresh token, whatever
authsvc's grace window. The lock is released before sleeping between attempts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Generator

from authsvc_client.errors import (
    AuthServiceUnavailable,
    ReauthenticationRequired,
    RefreshTokenRejected,
    TokenStoreError,
    TokenStoreUnavailable,
)
from authsvc_client.policy import RefreshPolicy, backoff_delay
from authsvc_client.tokens import Credentials, Tokens


@dataclasses.dataclass(frozen=True)
class LockStore:
    """Take the store's exclusive lock, across processes; the result is the held lock.

    It is held until `UnlockStore` or the end of the plan, however the plan ends.
    """


@dataclasses.dataclass(frozen=True)
class LoadStored:
    """Read the token store; the result is `Tokens | None`."""


@dataclasses.dataclass(frozen=True)
class SaveStored:
    """Write the new pair to the store (under the lock); the result is None."""

    tokens: Tokens


@dataclasses.dataclass(frozen=True)
class UnlockStore:
    """Release the store's lock; the result is None."""


@dataclasses.dataclass(frozen=True)
class Refresh:
    """Call Refresh; the result is `Tokens`."""

    refresh_token: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True)
class Login:
    """Call Login; the result is `Tokens`."""

    credentials: Credentials


@dataclasses.dataclass(frozen=True)
class Sleep:
    """Wait before the next attempt; the result is None."""

    seconds: float


Action = LockStore | LoadStored | SaveStored | UnlockStore | Refresh | Login | Sleep


@dataclasses.dataclass(frozen=True)
class Obtained:
    """The plan's result: a pair, and whether it was adopted from the store (not new)."""

    tokens: Tokens
    adopted: bool


Plan = Generator[Action, "Tokens | None", Obtained]


def obtain(
    refresh_token: str | None,
    credentials: Credentials | None,
    *,
    known_refresh_token: str | None,
    retired: Collection[str] = (),
    on_refused: Callable[[str], None] = lambda _token: None,
    check_store: bool,
    fallback_is_valid: bool,
    policy: RefreshPolicy,
    random: Callable[[], float],
) -> Plan:
    """Plan for getting a usable pair.

    Args:
        refresh_token: The newest refresh token, or None when there is none worth sending.
        credentials: What to log in with when the refresh token is refused, if anything.
        known_refresh_token: The newest refresh token this process has seen, even if it is
            not worth sending; a stored pair with another refresh token is newer, unless
            its refresh token is one of `retired`.
        retired: Refresh tokens this process has replaced or seen refused: a stored pair
            holding one is older than ours (e.g. a save failed), never adopted.
        on_refused: Told the refresh token authsvc refused, so it is never sent again.
        check_store: Whether there is a shared store that another process may update; each
            attempt then locks it, reads it (a pair rotated elsewhere is adopted instead of
            sending a retired token, or logging in needlessly) and saves the new pair before
            releasing it.
        fallback_is_valid: The current access token is still valid, so a transient failure
            is raised at once (the caller keeps using that token) rather than retried here.
        policy: Backoff settings.
        random: Source of jitter in [0, 1).

    Raises:
        ReauthenticationRequired: The refresh token is refused and there are no credentials.
        AuthServiceUnavailable: authsvc stayed unreachable.
        TokenStoreUnavailable: The store could not be locked (held too long elsewhere).
        TokenUnavailable: Login refused, or another error from the transport.
    """
    refused: RefreshTokenRejected | None = None
    attempt = 0
    while True:
        attempt += 1
        if check_store:
            try:
                yield LockStore()
            except TokenStoreError as exc:
                raise TokenStoreUnavailable(
                    f"no refresh was tried: the token store cannot be locked: {exc}"
                ) from exc
            stored = yield LoadStored()
            if stored is not None and _newer(stored, known_refresh_token, retired):
                return Obtained(stored, adopted=True)
        action: Refresh | Login
        if refresh_token is not None:
            action = Refresh(refresh_token)
        elif credentials is not None:
            action = Login(credentials)
        elif refused is not None:
            raise ReauthenticationRequired(
                "authsvc rejected the refresh token (expired, revoked or reused) and "
                "there are no credentials to log in again; log in again"
            ) from refused
        else:
            raise ReauthenticationRequired(
                "no valid session and no credentials to log in with; log in again"
            )
        try:
            tokens = yield action
        except RefreshTokenRejected as exc:
            if refresh_token is not None:
                on_refused(refresh_token)
                retired = (*retired, refresh_token)
            # Next: the store's pair, if another process has one, else a login.
            refused, refresh_token, attempt = exc, None, 0
        except AuthServiceUnavailable:
            if fallback_is_valid or attempt >= policy.max_attempts:
                raise
            if check_store:
                yield UnlockStore()
            yield Sleep(backoff_delay(attempt, policy, random()))
            continue
        else:
            assert tokens is not None
            if check_store:
                yield SaveStored(tokens)
            return Obtained(tokens, adopted=False)
        if check_store:
            yield UnlockStore()


def _newer(stored: Tokens, known: str | None, retired: Collection[str]) -> bool:
    """Whether a stored pair is newer than what this process holds."""
    return stored.refresh_token != known and stored.refresh_token not in retired
