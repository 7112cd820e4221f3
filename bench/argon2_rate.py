"""The bare argon2id verify rate: the ceiling of Login throughput on this machine."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import argon2


def verify_rate(
    memory_kib: int, time_cost: int, parallelism: int, threads: int, duration: float
) -> float:
    """Verifications per second with `threads` threads verifying back to back.

    The same parameters and thread count as the server's login pool, so Login's rate can
    be compared with it; argon2-cffi releases the GIL, so threads run in parallel.
    """
    hasher = argon2.PasswordHasher(
        time_cost=time_cost,
        memory_cost=memory_kib,
        parallelism=parallelism,
        type=argon2.Type.ID,
    )
    stored = hasher.hash("bench-password")
    hasher.verify(stored, "bench-password")  # warm up allocator and code paths
    count = 0
    lock = threading.Lock()
    end = time.monotonic() + duration

    def worker() -> None:
        nonlocal count
        done = 0
        while time.monotonic() < end:
            hasher.verify(stored, "bench-password")
            done += 1
        with lock:
            count += done

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        for future in [pool.submit(worker) for _ in range(threads)]:
            future.result()
    return count / (time.monotonic() - started)
