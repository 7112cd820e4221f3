"""A local view of which sessions are alive, kept current by Redis pub/sub, so that
Validate needs no Redis round trip in the steady state.

The view caches only *positive* answers ("this access token's session was alive and the
token unrevoked"), each filled from a Redis read. Every script that ends a session or
revokes a token publishes an event in the same atomic step; the event removes the cached
answers it affects.

Where the events come from (`authsvc.revocation_channels`):
* one Redis: the classic channel on that Redis;
* Sentinel: the classic channel on the master the sentinels name (checked with ROLE);
* Cluster: one *feed* per master, subscribed (SSUBSCRIBE) to the sharded channel of every
  slot that master owns, per the slot map read with CLUSTER SLOTS.

Why a revocation is seen everywhere right after Revoke returns: Redis writes the event to
every subscriber's socket in the same event-loop pass as it answers the revoking script,
but not necessarily before that answer. So the revoking call follows its script, on the
same connection to the same master, with a command Redis answers only in a later pass:
`WAIT` for replicas, or a PING when none must acknowledge (`RedisConnection.run_script`).
Its answer proves the event is already written to every subscriber *of that Redis
process*, which is why every feed subscribes on the master itself (on a Cluster a classic
PUBLISH reaches other nodes later, over the cluster bus: not valid there). Written is not
yet received: on a lossy network a retransmitted packet can still arrive late; the README
states that window.

Pub/sub is at-most-once, so any gap means events may be lost: the view is trusted only
while every feed is confirmed subscribed to all its channels and heard from (a message or
a PONG) within the last few intervals, and while the topology it subscribed to is still
the current one (the slot map, or the sentinels' master, re-read every interval). A feed
lost, silent, refused (an error reply, a replica where a master was expected), told that
a slot moved away (SUNSUBSCRIBE), or a topology change empties the view and sends
Validate to Redis until every feed is back. A generation counter, bumped by every event,
keeps a read that raced an event from caching its stale answer.

Events are applied by an asyncio Protocol in `data_received`, with no buffer in between,
and the hot path refuses to answer from the view while any feed socket has unread bytes
(a zero-timeout poll), so an event that has arrived but is not yet applied sends Validate
to Redis instead. The instance that revokes also applies its own event synchronously.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import select
import ssl
import time
from typing import Any

import hiredis
from authsvc_client.cache import LruCache
from redis.asyncio.connection import parse_url

from authsvc.redis_target import RedisTarget, Topology, parse_redis_url
from authsvc.redis_wire import ErrorReply, command, request, sentinel_master
from authsvc.revocation_channels import CLASSIC_CHANNEL, shard_channel
from authsvc.telemetry import NULL_TELEMETRY, Telemetry

log = logging.getLogger(__name__)

_MAX_ENTRIES = 200_000

_Entry = tuple[str, str, str]  # (subject, session id, token id)
_MESSAGES = (b"message", b"smessage")
_CONFIRMATIONS = (b"subscribe", b"ssubscribe")
_UNSUBSCRIBED = (b"unsubscribe", b"sunsubscribe")


class FeedRefused(Exception):
    """Raised when a feed cannot be trusted: an error reply, a replica, a moved slot."""


@dataclasses.dataclass(frozen=True)
class _Source:
    """One Redis to subscribe on, and the channels to subscribe to there."""

    host: str
    port: int
    path: str  # unix socket (one Redis only)
    channels: tuple[str, ...]
    sharded: bool


class _FeedProtocol(asyncio.Protocol):
    """Parses one feed's replies (hiredis) and hands each to the view at once."""

    def __init__(self, view: RevocationView, expected: int) -> None:
        self._view = view
        self._reader = hiredis.Reader()
        self.expected = expected
        self.confirmed = 0
        self.heard = time.monotonic()
        self.refused: str = ""
        self.transport: asyncio.Transport | None = None
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            self.heard = time.monotonic()
            self._on_reply(reply)
        self._view._feed_heard()

    def _on_reply(self, reply: Any) -> None:
        if isinstance(reply, list) and reply:
            kind = reply[0]
            if kind in _MESSAGES and len(reply) == 3:
                self._view.apply(reply[2].decode())
            elif kind in _CONFIRMATIONS:
                self.confirmed += 1
                if self.confirmed == self.expected:
                    self._view._feed_confirmed()
            elif kind in _UNSUBSCRIBED:  # e.g. the slot moved away: events may go elsewhere
                self.refuse("unsubscribed by the server")
            elif kind in (b"slave", b"sentinel"):  # ROLE: not the master
                self.refuse("not a master")
        elif isinstance(reply, Exception):  # NOAUTH, MOVED, ...: never trust this feed
            self.refuse(type(reply).__name__)

    def refuse(self, why: str) -> None:
        if not self.refused:
            self.refused = why
            self._view._feed_refused(why)
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.lost.done():
            self.lost.set_result(None)


class RevocationView:
    """Positive cache of (subject, session, token id) known alive, invalidated by events.

    `telemetry` hears when the subscription becomes live or is lost (the server wiring
    sets it).
    """

    def __init__(
        self,
        redis_url: str,
        interval: float = 1.0,
        connect_timeout: float = 2.0,
        max_entries: int = _MAX_ENTRIES,
    ) -> None:
        self._target: RedisTarget = parse_redis_url(redis_url)
        self._url = redis_url
        self._interval = interval
        self._connect_timeout = connect_timeout
        # subject -> session id -> token ids: the view answers from this alone, and events
        # find every token of a user or a session in it. `_recent` holds the same tokens
        # only to bound them: when full, the least recently used token leaves both, so a
        # full view keeps its busy tokens (and an eviction only sends Validate to Redis).
        self._alive: dict[str, dict[str, set[str]]] = {}
        self._recent: LruCache[_Entry, bool] = LruCache(max_entries, on_evict=self._evicted)
        self._live = False
        self._heard = 0.0
        self._poll: Any = None
        self.generation = 0
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._feeds: list[_FeedProtocol] = []
        self._state_changed: asyncio.Condition | None = None
        self.telemetry: Telemetry = NULL_TELEMETRY
        self._known: list[tuple[str, int]] = []  # the masters of the last slot map

    # -- the hot path -------------------------------------------------------------------

    def is_alive(self, subject: str, sid: str, jti: str) -> bool:
        """True only when the view knows the token's session alive and the token unrevoked."""
        if not self._live or time.monotonic() - self._heard > 3 * self._interval:
            return False
        sessions = self._alive.get(subject)
        if sessions is None:
            return False
        tokens = sessions.get(sid)
        if tokens is None or jti not in tokens:
            return False
        self._recent.get((subject, sid, jti))  # a use: a full view keeps its busy tokens
        # Unread bytes on a feed may be an event for this very token: ask Redis instead.
        return not self._poll.poll(0)

    def remember(self, subject: str, sid: str, jti: str, generation: int) -> None:
        """Cache a positive Redis answer, unless an event arrived since the read began."""
        if generation != self.generation or not self._live:
            return
        self._alive.setdefault(subject, {}).setdefault(sid, set()).add(jti)
        self._recent.put((subject, sid, jti), True)

    # -- events -------------------------------------------------------------------------

    def apply(self, event: str) -> None:
        """Apply one revocation event (`s|sub|sid`, `u|sub` or `t|sub|sid|jti`)."""
        self.generation += 1
        kind, _, rest = event.partition("|")
        parts = rest.split("|")
        subject = parts[0]
        sessions = self._alive.get(subject)
        if sessions is None:
            return
        if kind == "u":
            for sid in list(sessions):
                self._forget(subject, sid)
        elif kind == "s" and len(parts) == 2:
            self._forget(subject, parts[1])
        elif kind == "t" and len(parts) == 3:
            self._forget(subject, parts[1], parts[2])
        else:
            self._clear()  # an event we do not understand: trust nothing cached

    def _forget(self, subject: str, sid: str, jti: str | None = None) -> None:
        """Drop one token, or every token of a session (jti None), from the view."""
        sessions = self._alive.get(subject, {})
        tokens = sessions.get(sid, set())
        for gone in (jti,) if jti is not None else tuple(tokens):
            if gone in tokens:
                tokens.discard(gone)
                self._recent.pop((subject, sid, gone))
        if not tokens:
            sessions.pop(sid, None)
        if not sessions:
            self._alive.pop(subject, None)

    def _evicted(self, entry: _Entry, _: bool) -> None:
        self._forget(*entry)

    def _clear(self) -> None:
        self._alive.clear()
        self._recent.clear()
        self.generation += 1

    @property
    def size(self) -> int:
        """The number of tokens the view holds."""
        return len(self._recent)

    # -- feed state -----------------------------------------------------------------------

    @property
    def live(self) -> bool:
        """True while every feed is confirmed and recently heard from."""
        return self._live and time.monotonic() - self._heard <= 3 * self._interval

    def _feed_confirmed(self) -> None:
        if self._live or not self._feeds:
            return
        if all(f.confirmed >= f.expected and not f.refused for f in self._feeds):
            self._clear()
            self._heard = min(f.heard for f in self._feeds)
            self._live = True
            log.info("revocation feed live", extra={"event": "revocation_feed_up"})
            self.telemetry.revocation_feed(True)
            self._announce()

    def _feed_heard(self) -> None:
        if self._live:
            self._heard = min(f.heard for f in self._feeds)

    def _feed_refused(self, why: str) -> None:
        log.warning("revocation feed refused: %s", why)
        self._set_dead()

    def start(self) -> None:
        """Start following the revocation channels in a background task."""
        self._state_changed = asyncio.Condition()
        self._task = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        """Stop following; the view is emptied."""
        self._stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._set_dead()

    async def wait_until(self, live: bool) -> None:
        """Wait until the subscription is (or is not) confirmed live."""
        assert self._state_changed is not None
        async with self._state_changed:
            await self._state_changed.wait_for(lambda: self._live == live)

    def _announce(self) -> None:
        cond = self._state_changed
        if cond is None:
            return

        async def notify() -> None:
            async with cond:
                cond.notify_all()

        asyncio.get_running_loop().create_task(notify())

    def _set_dead(self) -> None:
        if self._live:
            self.telemetry.revocation_feed(False)
        if self._live and not self._stopping:
            log.warning("revocation feed lost; validating against Redis directly",
                        extra={"event": "revocation_feed_down"})  # fmt: skip
        was_live = self._live
        self._live = False
        self._clear()
        if was_live or self._stopping:
            self._announce()

    # -- following ----------------------------------------------------------------------

    async def _follow(self) -> None:
        backoff = 0.05
        while not self._stopping:
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a connection that
                # completes as it times out, leaving it open.
                async with asyncio.timeout(self._connect_timeout * 2):
                    sources = await self._discover()
                await self._subscribe_and_watch(sources)
                backoff = 0.05
            except (OSError, TimeoutError, FeedRefused) as exc:
                log.debug("revocation feed: %s", exc)
            except Exception:  # never let the follower die: the view would stay dead
                log.exception("revocation feed failed; starting over")
            finally:
                for feed in self._feeds:
                    if feed.transport is not None:
                        feed.transport.close()
                self._feeds = []
                self._poll = None
            self._set_dead()
            await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311
            backoff = min(backoff * 2, self._interval)

    async def _discover(self) -> list[_Source]:
        """Where to subscribe right now, from the URL, the sentinels or the slot map."""
        t = self._target
        if t.topology is Topology.SINGLE:
            opts = parse_url(self._url)
            return [
                _Source(opts.get("host", ""), int(opts.get("port", 6379)), opts.get("path", ""),
                        (CLASSIC_CHANNEL,), sharded=False)
            ]  # fmt: skip
        if t.topology is Topology.SENTINEL:
            host, port = await sentinel_master(
                t.nodes, t.master_name, self._connect_timeout, self._tls()
            )
            return [_Source(host, port, "", (CLASSIC_CHANNEL,), sharded=False)]
        slot_map = await self._slot_map()
        return [
            _Source(host, port, "", tuple(shard_channel(s) for s in slots), sharded=True)
            for (host, port), slots in sorted(slot_map.items())
        ]

    def _auth(self) -> list[tuple[str, ...]]:
        t = self._target
        if t.topology is Topology.SINGLE:
            opts = parse_url(self._url)
            user, password = opts.get("username"), opts.get("password")
        else:
            user, password = t.username, t.password
        return [("AUTH", user or "default", password)] if password else []

    async def _slot_map(self) -> dict[tuple[str, int], list[int]]:
        """master (host, port) -> its slots, from the first node that answers."""
        for host, port in self._seeds():
            with contextlib.suppress(OSError, TimeoutError, ErrorReply):
                commands = [*self._auth(), ("CLUSTER", "SLOTS")]
                replies = await request(host, port, commands, self._connect_timeout, self._tls())
                owners: dict[tuple[str, int], list[int]] = {}
                for start, end, master, *_ in replies[-1]:
                    owner = (master[0].decode() or host, int(master[1]))
                    owners.setdefault(owner, []).extend(range(int(start), int(end) + 1))
                if sum(len(s) for s in owners.values()) == 16384:
                    self._known = list(owners)
                    return owners
        raise OSError("no node gives a complete slot map")

    def _seeds(self) -> list[tuple[str, int]]:
        seen = dict.fromkeys([*self._known, *self._target.nodes])
        return list(seen)

    def _tls(self) -> ssl.SSLContext | None:
        if not (self._target.tls or self._url.startswith("rediss://")):
            return None
        return ssl.create_default_context(cafile=self._target.ssl_ca_certs)

    async def _connect(self, source: _Source) -> _FeedProtocol:
        loop = asyncio.get_running_loop()
        feed = _FeedProtocol(self, expected=len(source.channels))
        self._feeds.append(feed)  # closed by `_follow` whatever happens next
        if source.path:
            await loop.create_unix_connection(lambda: feed, source.path)
        else:
            await loop.create_connection(lambda: feed, source.host, source.port, ssl=self._tls())
        return feed

    async def _subscribe_and_watch(self, sources: list[_Source]) -> None:
        """Subscribe everywhere; return when any feed is lost, refused or silent for a
        PING's interval, or the topology changed."""
        async with asyncio.timeout(self._connect_timeout):
            feeds = await asyncio.gather(*(self._connect(s) for s in sources))
        poller = select.poll()
        for feed in feeds:
            sock = feed.transport.get_extra_info("socket") if feed.transport else None
            if sock is None:  # closed already (e.g. the node died just now)
                raise OSError("feed connection closed")
            poller.register(sock.fileno(), select.POLLIN)
        self._poll = poller
        topology = self._target.topology
        for feed, source in zip(feeds, sources, strict=True):
            assert feed.transport is not None
            out = [command(*a) for a in self._auth()]
            if topology is not Topology.SINGLE:
                out.append(command("ROLE"))  # a replica would get the events late
            if source.sharded:  # one command per slot: a command's channels share a slot
                out += [command("SSUBSCRIBE", ch) for ch in source.channels]
            else:
                out.append(command("SUBSCRIBE", *source.channels))
            feed.transport.write(b"".join(out))
        pinged: set[int] = set()
        while not self._stopping:
            heard = [f.heard for f in feeds]
            done, _ = await asyncio.wait(
                [f.lost for f in feeds], timeout=self._interval, return_when=asyncio.FIRST_COMPLETED
            )
            if done or any(f.refused for f in feeds):
                return
            for i, feed in enumerate(feeds):
                if feed.heard != heard[i]:
                    pinged.discard(i)
                elif i in pinged:  # silent for a whole interval after a PING
                    return
                else:
                    assert feed.transport is not None
                    feed.transport.write(command("PING"))
                    pinged.add(i)
            if topology is not Topology.SINGLE and self._live:
                async with asyncio.timeout(self._connect_timeout * 2):
                    now = await self._discover()
                if now != sources:
                    log.info("redis topology changed; resubscribing")
                    return
