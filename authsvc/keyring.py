"""The signing-key ring every instance shares through Redis, and its rotation schedule.

Each key record carries two times, both from the clock of whoever added it:
`published_ms` (it is in the JWKS from then on) and `activates_ms` (it signs from then on,
one JWKS cache period later, `AUTHSVC_JWKS_CACHE_SECONDS`). Everything else follows from
those times and the clock, the same way on every instance (`plan`):

* the signing key is the key activated last;
* a key not yet active is published (verifiers fetch it before it signs);
* a key whose successor has activated is retired: it still verifies until every token it
  signed has expired (access TTL + leeway, plus a margin for clock skew), then it leaves
  the JWKS and the ring.

So rotating is only adding a record; no instance has to be told when to switch. Each
instance re-reads the ring at least every `poll_seconds` (by its injected clock, on the
next request or from the server's background loop) and recomputes the schedule when its
next change is due, so a key added anywhere is known everywhere long before it signs.

Private keys are in Redis only sealed under the key-encryption key (`authsvc.sealing`);
a record whose seal does not open with this instance's KEK, or whose key does not match
its kid, is ignored: Redis write access alone cannot add a key that verifies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from authsvc import events
from authsvc.clock import Clock, system_clock
from authsvc.config import Settings
from authsvc.errors import ConfigError, StoreUnavailable
from authsvc.keys import (
    KeySet,
    NewKey,
    PrivateKey,
    PublicKey,
    generate_private_key,
    keyset_of,
    load_private_key,
    verification_key,
)
from authsvc.sealing import KeyEncryptionKey
from authsvc.store import AddKeyIf, RedisStore, StoredSigningKey

log = logging.getLogger(__name__)

#: Retired keys verify this much longer than their last token could live (clock skew
#: between instances, and the time a request takes between choosing a key and signing).
RETIRE_MARGIN_SECONDS = 60
MAX_POLL_SECONDS = 10.0


@dataclasses.dataclass(frozen=True)
class RingKey:
    """An opened key of the ring."""

    kid: str
    alg: str
    private_key: PrivateKey
    published_ms: int
    activates_ms: int


@dataclasses.dataclass(frozen=True)
class Schedule:
    """What each key of the ring does at one moment."""

    signing: RingKey
    #: Published, not signing yet.
    upcoming: tuple[RingKey, ...]
    #: Retired keys still verifying, with the time (ms) each leaves the JWKS.
    retired: tuple[tuple[RingKey, int], ...]
    #: Kids past their retention: to delete.
    expired: tuple[str, ...]
    #: When this schedule changes next (ms; inf: never without a new key).
    next_change_ms: float

    @property
    def verifying(self) -> tuple[RingKey, ...]:
        """Every key in the JWKS: the signing key, the upcoming and the retired ones."""
        return (self.signing, *self.upcoming, *(key for key, _ in self.retired))


def plan(keys: Iterable[RingKey], now_ms: int, retain_ms: int) -> Schedule | None:
    """The schedule of `keys` at `now_ms` (None for no keys); pure, same on every instance.

    Args:
        retain_ms: how long a key verifies after its successor started signing.
    """
    ordered = sorted(keys, key=lambda k: (k.activates_ms, k.published_ms, k.kid))
    if not ordered:
        return None
    active = [k for k in ordered if k.activates_ms <= now_ms]
    # Nothing active yet happens only with an empty ring's first key seen from a clock
    # behind its creator's: sign with the earliest (no verifier can hold an older set).
    signing = active[-1] if active else ordered[0]
    upcoming = tuple(k for k in ordered if k.activates_ms > now_ms and k is not signing)
    retired: list[tuple[RingKey, int]] = []
    expired: list[str] = []
    for key, successor in zip(active, active[1:], strict=False):
        leaves_ms = successor.activates_ms + retain_ms
        if now_ms < leaves_ms:
            retired.append((key, leaves_ms))
        else:
            expired.append(key.kid)
    changes = [k.activates_ms for k in upcoming] + [leaves for _, leaves in retired]
    next_change = min(changes, default=math.inf)
    return Schedule(signing, upcoming, tuple(retired), tuple(expired), next_change)


def _aad(kid: str, alg: str, published_ms: int, activates_ms: int) -> bytes:
    """What a seal is bound to: the record's identity and times."""
    return json.dumps(["authsvc-signing-key", kid, alg, published_ms, activates_ms]).encode()


class KeyRing:
    """The shared key ring as a `KeyProvider`: reads, follows, rotates and prunes it."""

    def __init__(
        self,
        settings: Settings,
        store: RedisStore,
        kek: KeyEncryptionKey,
        clock: Clock = system_clock,
        sink: events.EventSink | None = None,
        adopt_key_file: Path | None = None,
        extra_verification: Sequence[PublicKey] = (),
    ) -> None:
        """`adopt_key_file`: a PEM key that becomes the first key of an empty ring (the
        key generated under the data directory by versions before the ring), if it exists.
        `extra_verification`: keys also accepted (`AUTHSVC_VERIFY_KEY_FILES`).
        """
        self._store = store
        self._kek = kek
        self._clock = clock
        self._events: events.EventSink = sink or events.NullSink()
        self._adopt = adopt_key_file
        self._extra = tuple(extra_verification)
        self._alg = settings.signing_alg
        self._prepublish_ms = settings.jwks_cache_seconds * 1000
        self._rotation_ms = settings.key_rotation_seconds * 1000
        self._retain_ms = 1000 * (
            settings.access_ttl_seconds + settings.leeway_seconds + RETIRE_MARGIN_SECONDS
        )
        #: Seconds (of the injected clock) between reads of the ring.
        self.poll_seconds = min(MAX_POLL_SECONDS, settings.jwks_cache_seconds / 4)
        self._keys: dict[str, RingKey] = {}
        self._opened: dict[StoredSigningKey, RingKey | None] = {}
        self._current: KeySet | None = None
        self._shape: tuple[str, tuple[str, ...]] = ("", ())
        self._read_at = -math.inf
        self._next_change_ms = -math.inf
        self._pending: asyncio.Future[None] | None = None

    @property
    def current(self) -> KeySet:
        """The key set of the schedule's last computation.

        Raises:
            StoreUnavailable: the ring has not been read yet (Redis unreachable since start).
        """
        if self._current is None:
            raise StoreUnavailable("signing keys not loaded yet: token store unavailable")
        return self._current

    def due(self) -> bool:
        """Whether the ring should be read again or the schedule has changed."""
        now = self._clock()
        return now >= self._read_at + self.poll_seconds or now * 1000 >= self._next_change_ms

    async def refresh(self) -> None:
        """Read the ring if a read is due, and recompute the schedule.

        Callers arriving while a read is in flight wait for it; if that read began before
        they found one due, they wait for a fresh one (at most two reads).

        Raises:
            ConfigError: no key of the ring opens with this KEK and none is at hand.
        """
        for _ in range(2):
            if not self.due():
                return
            if self._pending is None or self._pending.done():
                self._pending = asyncio.ensure_future(self._refresh_once())
            await asyncio.shield(self._pending)

    async def _refresh_once(self) -> None:
        now = self._clock()
        if now >= self._read_at + self.poll_seconds:
            self._read_at = now
            try:
                await self._read(now)
            except StoreUnavailable:
                # Keep the keys at hand (the schedule still follows the clock); next poll.
                log.warning("cannot read the signing-key ring", extra={"event": "keyring_down"})
        self._apply(self._clock())

    async def _records(self, now: float) -> list[StoredSigningKey]:
        """The ring's records; an empty ring first gets a key that signs at once (there
        is no verifier to warn ahead)."""
        records = await self._store.signing_keys()
        if not records:
            await self._add(now, AddKeyIf.RING_EMPTY, by="startup", source="authsvc")
            records = await self._store.signing_keys()
        return records

    async def _read(self, now: float) -> None:
        records = await self._records(now)
        keys = {key.kid: key for key in map(self._open, records) if key is not None}
        self._opened = {r: self._opened[r] for r in records}  # forget deleted records
        if not keys:
            if self._current is None:
                raise ConfigError(
                    f"none of the {len(records)} signing keys in Redis opens with this "
                    "key-encryption key: every instance needs the same "
                    "AUTHSVC_KEY_ENCRYPTION_KEY_FILE"
                )
            log.error("no signing key of the ring opens; keeping the keys at hand")
            return
        self._keys = keys
        now_ms = int(now * 1000)
        newest = max(key.published_ms for key in keys.values())
        if self._rotation_ms and newest <= now_ms - self._rotation_ms:
            added = await self._add(
                now, AddKeyIf.ROTATION_DUE, by="schedule", source="authsvc",
                due_before_ms=now_ms - self._rotation_ms,
                activates_ms=now_ms + self._prepublish_ms, after=list(self._keys.values()),
            )  # fmt: skip
            if added is not None:
                self._keys[added.kid] = added
        schedule = plan(self._keys.values(), now_ms, self._retain_ms)
        if schedule is not None and schedule.expired:
            await self._store.remove_signing_keys(schedule.expired)
            for kid in schedule.expired:
                del self._keys[kid]

    def _open(self, record: StoredSigningKey) -> RingKey | None:
        """The record's key, if it opens with our KEK and matches its kid (remembered)."""
        if record in self._opened:
            return self._opened[record]
        aad = _aad(record.kid, record.alg, record.published_ms, record.activates_ms)
        private_key = self._kek.open(record.sealed, aad)
        key = None
        if private_key is not None:
            vk = verification_key(private_key.public_key())
            if vk.kid == record.kid and vk.alg == record.alg:
                key = RingKey(vk.kid, vk.alg, private_key, record.published_ms, record.activates_ms)
        if key is None:
            log.error(
                "signing key %s in Redis does not open with this key-encryption key; ignored",
                record.kid,
                extra={"event": "keyring_unusable_key"},
            )
        self._opened[record] = key
        return key

    def _apply(self, now: float) -> None:
        """Recompute the schedule; a new KeySet only when what signs or verifies changed."""
        schedule = plan(self._keys.values(), int(now * 1000), self._retain_ms)
        if schedule is None:
            return
        self._next_change_ms = schedule.next_change_ms
        verifying = schedule.verifying
        shape = (schedule.signing.kid, tuple(k.kid for k in verifying))
        if self._current is None or shape != self._shape:
            others = [*(k.private_key.public_key() for k in verifying[1:]), *self._extra]
            self._current = keyset_of(schedule.signing.private_key, others)
            self._shape = shape
            log.info(
                "signing with %s; %d keys published",
                schedule.signing.kid,
                len(verifying),
                extra={"event": "keyring_changed"},
            )

    async def _add(
        self,
        now: float,
        condition: AddKeyIf,
        *,
        by: str,
        source: str,
        due_before_ms: int = 0,
        activates_ms: int | None = None,
        after: Iterable[RingKey] = (),
    ) -> RingKey | None:
        """Create, seal and add a key if `condition` holds; the key if it was added.

        `after`: the ring's keys; the event names the one the new key takes over from.
        """
        now_ms = int(now * 1000)
        private_key = self._first_key() if condition is AddKeyIf.RING_EMPTY else None
        private_key = private_key or generate_private_key(self._alg)
        vk = verification_key(private_key.public_key())
        activates = now_ms if activates_ms is None else activates_ms
        sealed = self._kek.seal(private_key, _aad(vk.kid, vk.alg, now_ms, activates))
        record = StoredSigningKey(vk.kid, vk.alg, sealed, now_ms, activates, by)
        if not await self._store.add_signing_key(record, condition, due_before_ms):
            return None
        if condition is not AddKeyIf.RING_EMPTY:  # a first key replaces nothing
            latest = max(after, key=lambda k: (k.activates_ms, k.published_ms, k.kid), default=None)
            previous = latest.kid if latest is not None else ""
            self._events.emit(events.KeyRotated(vk.kid, source, by, previous))
        log.info("signing key %s added", vk.kid, extra={"event": "key_added"})
        return RingKey(vk.kid, vk.alg, private_key, now_ms, activates)

    def _first_key(self) -> PrivateKey | None:
        """The key to adopt into an empty ring, if one was given and exists."""
        if self._adopt is None or not self._adopt.exists():
            return None
        key = load_private_key(self._adopt)
        return key if verification_key(key.public_key()).alg == self._alg else None

    async def schedule(self) -> Schedule | None:
        """The ring's schedule now, read from Redis (for `authsvc keys list`); changes
        nothing.

        Raises:
            StoreUnavailable: Redis cannot be reached.
        """
        records = await self._store.signing_keys()
        keys = [key for key in map(self._open, records) if key is not None]
        return plan(keys, int(self._clock() * 1000), self._retain_ms)

    async def rotate(self, by: str, source: str) -> NewKey:
        """Add a new signing key: published at once, signing one JWKS cache period later.

        Raises:
            ConfigError: this KEK opens none of the ring's keys (a key sealed under it
                could not be used by the instances).
            StoreUnavailable: Redis cannot be reached.
        """
        now = self._clock()
        records = await self._records(now)
        opened = [key for key in map(self._open, records) if key is not None]
        if not opened:
            raise ConfigError(
                "this key-encryption key opens none of the ring's keys: a key sealed under "
                "it would be useless to the servers (AUTHSVC_KEY_ENCRYPTION_KEY_FILE)"
            )
        activates = int(now * 1000) + self._prepublish_ms
        key = await self._add(
            now, AddKeyIf.ALWAYS, by=by, source=source, activates_ms=activates, after=opened
        )
        assert key is not None  # ALWAYS adds
        self._read_at = -math.inf  # this instance publishes it with its next answer
        return NewKey(key.kid, key.alg, math.ceil(key.activates_ms / 1000))
