"""Redis memory per live session: `MEMORY USAGE` of the session keys after N logins."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import redis
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc

from bench.workloads import Account


# The key layout of authsvc/store.py (its module docstring); repeated here so that the
# bench reads Redis without importing the server's storage layer.
def session_key(name: str, sid: str) -> str:
    """The hash of one session."""
    return f"authsvc:{{u:{name}}}:s:{sid}"


def sessions_key(name: str) -> str:
    """The set of session ids of an account."""
    return f"authsvc:{{u:{name}}}:sessions"


@dataclasses.dataclass(frozen=True)
class SessionMemory:
    """What N logins of one account left in Redis.

    Attributes:
        logins: Logins made; live_sessions: session hashes found afterwards.
        session_keys_bytes: `MEMORY USAGE` of all session hashes, summed.
        sessions_set_bytes: `MEMORY USAGE` of the account's set of session ids.
    """

    logins: int
    live_sessions: int
    session_keys_bytes: int
    sessions_set_bytes: int

    @property
    def per_session(self) -> float:
        """(session hashes + sessions set) / logins, in bytes."""
        return (self.session_keys_bytes + self.sessions_set_bytes) / max(1, self.logins)


async def _logins(target: str, account: Account, n: int, concurrency: int) -> None:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = auth_pb2_grpc.AuthServiceStub(channel)
        request = auth_pb2.LoginRequest(username=account.name, password=account.secret)
        todo = iter(range(n))

        async def worker() -> None:
            for _ in todo:
                await stub.Login(request, timeout=60)

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def _memory_usage(client: redis.Redis, key: str) -> int:
    # SAMPLES 0: count every element, not an estimate from a sample.
    return int(client.memory_usage(key, samples=0) or 0)


def measure(
    target: str, client: redis.Redis, account: Account, n: int, concurrency: int = 4
) -> SessionMemory:
    """Log `account` in `n` times (a fresh account: no other sessions), then weigh its keys.

    `concurrency` stays below the server's failed-login throttle: it counts attempts in
    flight per account.
    """
    asyncio.run(_logins(target, account, n, concurrency))
    keys = list(client.scan_iter(match=session_key(account.name, "*"), count=1000))
    return SessionMemory(
        logins=n,
        live_sessions=len(keys),
        session_keys_bytes=sum(_memory_usage(client, key) for key in keys),
        sessions_set_bytes=_memory_usage(client, sessions_key(account.name)),
    )
