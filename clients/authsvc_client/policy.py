"""When to refresh and how long to back off: a small configuration object and pure functions."""

from __future__ import annotations

import dataclasses
from typing import Protocol


@dataclasses.dataclass(frozen=True)
class RefreshPolicy:
    """Tuning of the token manager; the defaults suit most services.

    Attributes:
        min_margin: Refresh at least this many seconds before the access token expires...
        margin_fraction: ...or this fraction of its lifetime before, whichever is larger...
        max_margin_fraction: ...but never more than this fraction of its lifetime, so a
            short-lived token is still used for a while instead of refreshed on every call.
        jitter_fraction: The margin shrinks by a random part of up to this fraction, so a
            fleet started together does not refresh in lockstep.
        forced_refresh_interval: A token that itself came from a forced refresh (a server
            refused its predecessor) is not force-refreshed again within this many seconds;
            this stops a server that refuses every token from causing a refresh per call.
        backoff_initial: First delay, in seconds, before retrying an unreachable authsvc.
        backoff_max: Cap on that delay, which doubles per attempt.
        max_attempts: Attempts per refresh while there is no valid access token to fall back on.
    """

    min_margin: float = 30.0
    margin_fraction: float = 0.1
    max_margin_fraction: float = 0.5
    jitter_fraction: float = 0.1
    forced_refresh_interval: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_attempts: int = 4


DEFAULT_POLICY = RefreshPolicy()


@dataclasses.dataclass(frozen=True)
class CallRetry:
    """Retries of single AuthService calls that authsvc answered UNAVAILABLE (an instance
    stopping in a rolling restart, a Redis failover in progress).

    Only calls that are safe to repeat and whose caller has no retry of its own are
    retried here: Validate and GetJwks. Refresh is retried by the token managers, with
    their capped backoff (`RefreshPolicy`), against authsvc's refresh grace window, in
    which a repeated Refresh gets back the pair the first one made instead of counting as
    reuse. Login is never repeated blindly (each attempt counts against the throttle).

    Attributes:
        attempts: Attempts per call, the first included.
        backoff_initial: First delay, in seconds; it doubles per attempt...
        backoff_max: ...up to this cap.
    """

    attempts: int = 4
    backoff_initial: float = 0.05
    backoff_max: float = 1.0


DEFAULT_CALL_RETRY = CallRetry()


class Backoff(Protocol):
    """Anything with a first delay and a cap (`RefreshPolicy`, `CallRetry`)."""

    @property
    def backoff_initial(self) -> float: ...

    @property
    def backoff_max(self) -> float: ...


def refresh_margin(lifetime: float, policy: RefreshPolicy, jitter: float) -> float:
    """Seconds before expiry at which a token of `lifetime` seconds becomes due for refresh.

    Args:
        lifetime: The access token's lifetime as issued.
        policy: The margins to apply.
        jitter: A random number in [0, 1).
    """
    margin = max(policy.min_margin, policy.margin_fraction * lifetime)
    margin = min(margin, policy.max_margin_fraction * lifetime)
    return margin * (1.0 - policy.jitter_fraction * jitter)


def backoff_delay(attempt: int, policy: Backoff, jitter: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based); "equal jitter".

    Args:
        attempt: How many attempts have failed so far.
        policy: Initial delay and cap.
        jitter: A random number in [0, 1).
    """
    ceiling = min(policy.backoff_max, policy.backoff_initial * 2.0 ** (attempt - 1))
    return ceiling * (0.5 + 0.5 * jitter)
