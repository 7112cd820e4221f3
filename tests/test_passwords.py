"""Password hashing: argon2id parameters, unknown accounts, and the hashing threads' priority."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from authsvc.passwords import HASH_THREAD_NICENESS, PasswordHasher


@pytest.fixture
def hasher() -> PasswordHasher:
    return PasswordHasher(memory_kib=19456, time_cost=2, parallelism=1, threads=1)


def test_argon2id_with_owasp_parameters(hasher: PasswordHasher) -> None:
    stored = hasher.hash("s3cret")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert hasher.verify(stored, "s3cret") and not hasher.verify(stored, "s3cret ")
    assert not hasher.needs_rehash(stored)
    weaker = PasswordHasher(memory_kib=7168, time_cost=5, parallelism=1, threads=1)
    assert hasher.needs_rehash(weaker.hash("s3cret"))


def test_unknown_account_never_verifies(hasher: PasswordHasher) -> None:
    assert not hasher.verify(None, "anything")
    assert not hasher.verify("not a hash", "anything")


def test_hashing_runs_below_the_event_loops_priority(hasher: PasswordHasher) -> None:
    def niceness() -> int:
        return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    async def on_pool() -> int:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(hasher._pool, niceness)

    assert asyncio.run(on_pool()) == niceness() + HASH_THREAD_NICENESS
