"""The authsvc signing keys, cached; refetched (rate-limited) when an unknown `kid` appears.

`KeyCache` decides and remembers; `KeySource` / `AsyncKeySource` do the fetching (GetJwks),
one fetch at a time. A fetch that fails keeps the keys already known.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Collection

from jwt import PyJWK, PyJWTError

from authsvc_client.errors import InvalidToken, VerifierUnavailable
from authsvc_client.jwt_rules import ALGORITHMS

_log = logging.getLogger(__name__)


def parse_jwks(jwks_json: str, algorithms: Collection[str]) -> dict[str, PyJWK]:
    """The signing keys of a JWK Set by `kid`, keeping only keys of `algorithms`.

    Keys without a `kid`, meant for encryption, or not parseable are skipped.

    Raises:
        VerifierUnavailable: The document is not a JWK Set.
    """
    try:
        document = json.loads(jwks_json)
        entries = document["keys"]
        if not isinstance(entries, list):
            raise TypeError("'keys' is not a list")
    except (ValueError, KeyError, TypeError) as exc:
        raise VerifierUnavailable(f"authsvc returned an invalid JWK Set: {exc}") from exc
    keys: dict[str, PyJWK] = {}
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
            continue
        if entry.get("use", "sig") != "sig":
            continue
        try:
            key = PyJWK(entry)
        except PyJWTError as exc:
            _log.warning("skipping unusable JWK %r: %s", entry.get("kid"), exc)
            continue
        if key.algorithm_name in algorithms:
            keys[entry["kid"]] = key
    return keys


class KeyCache:
    """Known keys and when to fetch them again; updates are serialised by the sources, and
    a fetch replaces the key dict in one assignment, so lookups never see it half-built.

    Args:
        algorithms: Keys of other algorithms are ignored.
        min_refetch_interval: At most one fetch per this many seconds caused by unknown kids.
        max_age: Keys are refetched after this many seconds anyway (to drop removed keys).
        clock: Monotonic seconds.
    """

    def __init__(
        self,
        *,
        algorithms: Collection[str] = ALGORITHMS,
        min_refetch_interval: float = 30.0,
        max_age: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.algorithms = frozenset(algorithms)
        self._min_refetch_interval = min_refetch_interval
        self._max_age = max_age
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at = -math.inf
        self._attempted_at = -math.inf

    def needs_fetch(self, kid: str) -> bool:
        """Whether to fetch the key set before looking up `kid`."""
        now = self._clock()
        if now - self._attempted_at < self._min_refetch_interval:
            return False
        return kid not in self._keys or now - self._fetched_at >= self._max_age

    def knows(self, kid: str) -> bool:
        """Whether a key for `kid` is at hand (possibly due for a refetch)."""
        return kid in self._keys

    def fetching(self) -> None:
        """Note that a fetch starts now (for the rate limit)."""
        self._attempted_at = self._clock()

    def update(self, jwks_json: str) -> None:
        """Replace the keys with those of a fetched JWK Set."""
        keys = parse_jwks(jwks_json, self.algorithms)
        self._keys = keys
        self._fetched_at = self._clock()

    def key(self, kid: str) -> PyJWK:
        """The key for `kid`.

        Raises:
            VerifierUnavailable: No key set could be fetched yet.
            InvalidToken: The key set has no such key (reason UNKNOWN_KEY).
        """
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._fetched_at == -math.inf:
            raise VerifierUnavailable("the authsvc signing keys could not be fetched")
        raise InvalidToken(f"no signing key with kid {kid!r}", "UNKNOWN_KEY")


class KeySource:
    """Keys for blocking servers: `fetch` is e.g. `AuthsvcClient(channel).get_jwks`."""

    def __init__(self, fetch: Callable[[], str], cache: KeyCache | None = None) -> None:
        self._fetch = fetch
        self.cache = cache or KeyCache()
        self._lock = threading.Lock()
        self._pending: threading.Event | None = None

    def key(self, kid: str) -> PyJWK:
        """The key for `kid`, fetching the key set first if needed; see `KeyCache.key`.

        One thread fetches at a time. A caller whose key is unknown waits for the fetch in
        flight, which ends within the fetch's own deadline, and then uses its result. A
        caller whose key is already known never waits for someone else's fetch (authsvc may
        be slow): it uses the key it has.
        """
        known = self.cache.knows(kid)
        with self._lock:
            pending = self._pending
            lead = pending is None and self.cache.needs_fetch(kid)
            if lead:
                # Armed here, under the lock, so a caller arriving now finds the fetch.
                self.cache.fetching()
                pending = self._pending = threading.Event()
        if lead:
            assert pending is not None
            self._fetch_into_cache(pending)
        elif pending is not None and not known:
            pending.wait()
        return self.cache.key(kid)

    def _fetch_into_cache(self, done: threading.Event) -> None:
        try:
            self.cache.update(self._fetch())
        except VerifierUnavailable as exc:
            _log.warning("fetching the authsvc signing keys failed: %s", exc)
        finally:
            with self._lock:
                self._pending = None
            done.set()


class AsyncKeySource:
    """Keys for asyncio servers: `fetch` is e.g. `AsyncAuthsvcClient(channel).get_jwks`."""

    def __init__(self, fetch: Callable[[], Awaitable[str]], cache: KeyCache | None = None) -> None:
        self._fetch = fetch
        self.cache = cache or KeyCache()
        self._lock = asyncio.Lock()
        self._pending: asyncio.Future[None] | None = None

    async def key(self, kid: str) -> PyJWK:
        """The key for `kid`, fetching the key set first if needed; see `KeyCache.key`."""
        pending = self._pending if self._pending is not None and not self._pending.done() else None
        if pending is None and self.cache.needs_fetch(kid):
            async with self._lock:
                if self.cache.needs_fetch(kid):
                    # The fetch runs in a task of its own: a call cancelled while waiting for
                    # it (client gone, deadline) must not leave the rate limit armed with no
                    # keys fetched.
                    if self._pending is None or self._pending.done():
                        self._pending = asyncio.ensure_future(self._fetch_once())
                    pending = self._pending
        if pending is not None:
            await asyncio.shield(pending)
        return self.cache.key(kid)

    async def _fetch_once(self) -> None:
        self.cache.fetching()
        try:
            self.cache.update(await self._fetch())
        except VerifierUnavailable as exc:
            _log.warning("fetching the authsvc signing keys failed: %s", exc)
