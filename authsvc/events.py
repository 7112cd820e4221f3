"""Domain events: one typed record per security-relevant fact the domain observes.

The domain emits them to an `EventSink`; the audit trail and the metrics are sinks
(they never reach into the domain's code paths). Events carry names and identifiers
only: never a password, secret or token.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import ClassVar, Protocol


class LoginFailure(enum.Enum):
    """Why a login with the right syntax did not open a session."""

    BAD_CREDENTIALS = "bad_credentials"
    DENIED_SCOPE = "denied_scope"
    DENIED_AUDIENCE = "denied_audience"


class RevokeRefusal(enum.Enum):
    """Why a Revoke of a real token ended nothing."""

    NOT_ADMINISTRATOR = "not_administrator"
    """An access token asked to end its session or user, from a caller not an administrator."""
    STALE_REFRESH_TOKEN = "stale_refresh_token"
    """A refresh token retired past the grace window (or expired, to end all sessions)."""


class ThrottleScope(enum.Enum):
    """Whose failed logins throttled a login."""

    ACCOUNT = "account"
    """The account name's failures in a row."""
    SOURCE = "source"
    """The caller's source (mTLS identity or peer address): password spraying."""
    GLOBAL = "global"
    """Every login's failures together: a distributed attack."""


class ShedReason(enum.Enum):
    """Why a login got no place among the password checks (RESOURCE_EXHAUSTED)."""

    QUEUE_FULL = "queue_full"
    """The queue was full and the caller's source held as many places as any other."""
    EVICTED = "evicted"
    """A source holding fewer places took this one's (the newest of the largest holder)."""
    BUSY = "busy"
    """Attempts in flight held every place of its account or source for too long."""


class RefreshOutcome(enum.Enum):
    """What a Refresh did."""

    ROTATED = "rotated"
    GRACE_REPLAY = "grace_replay"
    REUSE_DETECTED = "reuse_detected"
    REFUSED = "refused"
    """The session exists but the token is not its current one (or the session ended)."""
    UNKNOWN = "unknown"
    """The token names no live session (malformed, or its session is gone)."""


@dataclasses.dataclass(frozen=True)
class Event:
    """Base of every domain event; `name` is the stable event name."""

    name: ClassVar[str] = "event"


@dataclasses.dataclass(frozen=True)
class LoginSucceeded(Event):
    """A session was opened."""

    name: ClassVar[str] = "login_succeeded"
    account: str
    source: str
    session_id: str


@dataclasses.dataclass(frozen=True)
class LoginFailed(Event):
    """Credentials were refused (or granted scopes denied); `account` is the name tried."""

    name: ClassVar[str] = "login_failed"
    account: str
    source: str
    reason: LoginFailure


@dataclasses.dataclass(frozen=True)
class LoginThrottled(Event):
    """A login was refused before any password check because of failed attempts of the
    account, of the source, or of every login (`scope`)."""

    name: ClassVar[str] = "login_throttled"
    account: str
    source: str
    retry_after_seconds: int
    scope: ThrottleScope = ThrottleScope.ACCOUNT


@dataclasses.dataclass(frozen=True)
class LoginShed(Event):
    """A login was refused before any password check for want of a place in the queue."""

    name: ClassVar[str] = "login_shed"
    account: str
    source: str
    reason: ShedReason


@dataclasses.dataclass(frozen=True)
class Refreshed(Event):
    """A Refresh was answered (or refused); reuse ends the session."""

    name: ClassVar[str] = "refresh"
    account: str
    source: str
    session_id: str
    outcome: RefreshOutcome


@dataclasses.dataclass(frozen=True)
class Revoked(Event):
    """A Revoke took effect (`what`: token, session or user)."""

    name: ClassVar[str] = "revoked"
    account: str
    source: str
    session_id: str
    what: str
    by: str


@dataclasses.dataclass(frozen=True)
class RevokeRefused(Event):
    """A Revoke that would have ended a session or a user's sessions was refused: someone
    holds a token they may not use for that (`what`: session or user)."""

    name: ClassVar[str] = "revoke_refused"
    account: str
    source: str
    session_id: str
    what: str
    reason: RevokeRefusal


@dataclasses.dataclass(frozen=True)
class AccountChanged(Event):
    """An administrator changed an account (`action`: created, disabled, ...)."""

    name: ClassVar[str] = "account_changed"
    account: str
    source: str
    action: str
    by: str
    sessions_ended: int = 0


@dataclasses.dataclass(frozen=True)
class KeyRotated(Event):
    """A new signing key was added to the key ring: published now, it takes over from
    `previous_kid` one JWKS cache period later (kids are RFC 7638 thumbprints, public).

    `by` is the administrator (`local` for the CLI), or `schedule` for automatic rotation;
    `source` is where the call came from. No account is concerned.
    """

    name: ClassVar[str] = "key_rotated"
    kid: str
    source: str
    by: str
    previous_kid: str = ""


class EventSink(Protocol):
    """Receives domain events; must not block or raise."""

    def emit(self, event: Event) -> None:
        """Record one event."""


class NullSink:
    """Drops every event."""

    def emit(self, event: Event) -> None:
        """Drop `event`."""


class Fanout:
    """Sends every event to each of several sinks."""

    def __init__(self, sinks: Sequence[EventSink]) -> None:
        self._sinks = tuple(sinks)

    def emit(self, event: Event) -> None:
        """Pass `event` to every sink."""
        for sink in self._sinks:
            sink.emit(event)


class RecordingSink:
    """Keeps every event in memory (tests, and the last-events view of a debug tool)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        """Keep `event`."""
        self.events.append(event)
