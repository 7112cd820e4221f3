"""Operational signals: what the service's parts report for metrics, besides domain events.

Domain events (`events.py`) are facts about accounts and sessions; the audit trail and the
metrics both consume them. The signals here are about the machinery (a Validate answer, a
Redis error, the revocation feed, the hashing queue): metrics only, some on the hot path,
so they are plain method calls on a `Telemetry` object instead of event records. The
parts hold `NULL_TELEMETRY` until the server wiring gives them the metrics.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from authsvc.tokens import Invalid


class StoreErrorKind(enum.Enum):
    """How a Redis call failed."""

    TIMEOUT = "timeout"
    CONNECTION = "connection"
    SERVER = "server"
    """Redis answered with an error (READONLY, LOADING, OOM, ...)."""


class Telemetry(Protocol):
    """Receives operational signals; every method must be cheap and never raise."""

    def validated(self, reason: Invalid | None, view_hit: bool | None = None) -> None:
        """Validate answered: valid (`reason` None) or invalid for `reason`; `view_hit` says
        whether the revocation view answered (None: it was not asked)."""

    def store_failed(self, operation: str, kind: StoreErrorKind) -> None:
        """A store operation failed (named after the `RedisStore` method)."""

    def redis_up(self, up: bool) -> None:
        """The health monitor found Redis reachable (`up`) or not; called on each change."""

    def revocation_feed(self, live: bool) -> None:
        """The revocation view's subscription became live, or was lost."""

    def hash_queued(self) -> None:
        """A password hash or verification entered the hashing queue."""

    def hash_started(self, waited_seconds: float) -> None:
        """A hashing thread took a job from the queue after `waited_seconds`."""

    def hash_abandoned(self) -> None:
        """A queued job left the queue without running (cancelled)."""


class NullTelemetry:
    """Drops every signal."""

    def validated(self, reason: Invalid | None, view_hit: bool | None = None) -> None:
        """Drop."""

    def store_failed(self, operation: str, kind: StoreErrorKind) -> None:
        """Drop."""

    def redis_up(self, up: bool) -> None:
        """Drop."""

    def revocation_feed(self, live: bool) -> None:
        """Drop."""

    def hash_queued(self) -> None:
        """Drop."""

    def hash_started(self, waited_seconds: float) -> None:
        """Drop."""

    def hash_abandoned(self) -> None:
        """Drop."""


NULL_TELEMETRY: Telemetry = NullTelemetry()
