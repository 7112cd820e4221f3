"""An in-process stand-in for authsvc's Login/Refresh, for the pure policy tests only.

The behaviours are also tested end to end against the real server (test_*_e2e.py).
"""

from __future__ import annotations

import itertools
import threading

from authsvc_client import Credentials, CredentialsRejected, RefreshTokenRejected, Tokens
from authsvc_client.errors import AuthClientError

SECRET = "s3cret"


class ManualClock:
    """A monotonic clock that moves only when told."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeAuthsvc:
    """Rotating refresh tokens; records calls; can be told to fail."""

    def __init__(self, lifetime: float = 60.0, secret: str = SECRET) -> None:
        self.lifetime = lifetime
        self.secret = secret
        self.calls: list[str] = []
        self.live: set[str] = set()
        self.failures: list[AuthClientError] = []
        self.gate: threading.Event | None = None
        self.entered = threading.Event()
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def _issue(self) -> Tokens:
        n = next(self._ids)
        self.live.add(f"rt{n}")
        return Tokens(f"at{n}", f"rt{n}", expires_in=self.lifetime)

    def _enter(self, name: str) -> None:
        with self._lock:
            self.calls.append(name)
        self.entered.set()
        if self.gate is not None:
            assert self.gate.wait(timeout=10)
        if self.failures:
            raise self.failures.pop(0)

    def login(self, credentials: Credentials) -> Tokens:
        self._enter("Login")
        if credentials.secret != self.secret:
            raise CredentialsRejected("bad credentials")
        return self._issue()

    def refresh(self, refresh_token: str) -> Tokens:
        self._enter("Refresh")
        if refresh_token not in self.live:
            raise RefreshTokenRejected(f"{refresh_token} is retired or unknown")
        self.live.discard(refresh_token)
        return self._issue()


class AsyncFakeAuthsvc:
    """The same, for AsyncTokenManager."""

    def __init__(self, inner: FakeAuthsvc) -> None:
        self.inner = inner

    async def login(self, credentials: Credentials) -> Tokens:
        return self.inner.login(credentials)

    async def refresh(self, refresh_token: str) -> Tokens:
        return self.inner.refresh(refresh_token)
