"""Password and client-secret hashing with argon2id (argon2-cffi), off the event loop.

Parameters default to the OWASP Password Storage Cheat Sheet (m=19 MiB, t=2, p=1).
Unknown accounts are checked against a dummy hash so that timing does not reveal whether
an account exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from authsvc.telemetry import NULL_TELEMETRY, Telemetry

T = TypeVar("T")

MAX_SECRET_BYTES = 1024


HASH_THREAD_NICENESS = 19


def _lower_priority() -> None:
    """Run this hashing thread at a lower CPU priority than the event loop (Linux applies
    a nice value per thread), so a burst of logins cannot starve Validate of CPU."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + HASH_THREAD_NICENESS
        )


class PasswordHasher:
    """argon2id hashing and verification, run in a bounded thread pool.

    `telemetry` hears of each job entering the queue and leaving it (the server wiring
    sets it): whatever queues hashing jobs calls `hash_queued`, then exactly one of
    `hash_started(waited)` or `hash_abandoned`.
    """

    def __init__(self, memory_kib: int, time_cost: int, parallelism: int, threads: int) -> None:
        self._hasher = argon2.PasswordHasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            type=argon2.Type.ID,
        )
        self._pool = ThreadPoolExecutor(
            max_workers=threads, thread_name_prefix="argon2", initializer=_lower_priority
        )
        # A real hash of a random secret: verifying against it costs what a real check costs.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(32))
        self.telemetry: Telemetry = NULL_TELEMETRY

    def hash(self, secret: str) -> str:
        """Hash a password (blocking; used by admin commands)."""
        return self._hasher.hash(secret)

    def verify(self, stored_hash: str | None, secret: str) -> bool:
        """True when `secret` matches; with no stored hash, spends the same time and fails."""
        try:
            return self._hasher.verify(stored_hash or self._dummy_hash, secret) and (
                stored_hash is not None
            )
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        """True when the hash was made with other parameters than the current ones."""
        try:
            return self._hasher.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True

    async def verify_async(self, stored_hash: str | None, secret: str) -> bool:
        """`verify` in the thread pool, so the event loop keeps serving other calls."""
        return await self._queued(self.verify, stored_hash, secret)

    async def hash_async(self, secret: str) -> str:
        """`hash` in the thread pool."""
        return await self._queued(self.hash, secret)

    async def _queued(self, job: Callable[..., T], *args: Any) -> T:
        """Run `job` in the pool, telling `telemetry` how long it waited for a thread."""
        telemetry, queued_at = self.telemetry, time.monotonic()

        def run() -> T:
            telemetry.hash_started(time.monotonic() - queued_at)
            return job(*args)

        telemetry.hash_queued()
        try:
            future = self._pool.submit(run)
        except RuntimeError:  # the pool is shut down
            telemetry.hash_abandoned()
            raise
        # A job cancelled before a thread took it never runs: it leaves the queue here.
        future.add_done_callback(lambda f: telemetry.hash_abandoned() if f.cancelled() else None)
        return await asyncio.wrap_future(future)

    def close(self) -> None:
        """Stop the thread pool."""
        self._pool.shutdown(wait=False, cancel_futures=True)
