"""A local view of which sessions are alive, kept current by Redis pub/sub, so that
Validate needs no Redis round trip in the steady state.

The view caches only *positive* answers ("this access token's session was alive and the
token unrevoked"), each filled from a Redis read. Every script that ends a session or
revokes a token PUBLISHes an event in the same atomic step; the event removes the cached
answers it affects.

Why a revocation is seen everywhere right after Revoke returns: Redis writes the event to
every subscriber's socket in the same event-loop pass as it answers the revoking script,
but not necessarily before that answer (measured here: the publisher's answer came first
in about half of the tries). So the revoking call follows its script with a PING: Redis
answers it only in a later pass, which proves the event is already written to every
instance's socket before Revoke returns. (Written is not yet received: on a lossy network
a retransmitted packet can still arrive late; the README states that window.) The feed is
read
by an asyncio Protocol that applies events in `data_received`, with no buffer in between,
and the hot path refuses to answer from the view while the feed socket has unread bytes
(a zero-timeout poll), so an event that has arrived but is not yet applied sends Validate
to Redis instead. The instance that revokes also applies its own event synchronously.

The view is trusted only while the subscription is confirmed and heard from (a message or
a PONG) within the last few intervals. When it is not, the view is emptied and Validate
reads Redis directly until the subscription is back, so events missed during a gap can
never leave a stale positive answer behind. A generation counter, bumped by every event,
keeps a read that raced an event from caching its stale answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import select
import ssl
import time
from typing import Any

import hiredis
from authsvc_client.cache import LruCache
from redis.asyncio.connection import parse_url

from authsvc.store import REVOCATIONS_CHANNEL
from authsvc.telemetry import NULL_TELEMETRY, Telemetry

log = logging.getLogger(__name__)

_MAX_ENTRIES = 200_000

_Entry = tuple[str, str, str]  # (subject, session id, token id)


def _command(*parts: str) -> bytes:
    """Encode one Redis command in RESP (what every client sends)."""
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


class _FeedProtocol(asyncio.Protocol):
    """Parses the subscription's replies (hiredis) and hands each to the view at once."""

    def __init__(self, view: RevocationView) -> None:
        self._view = view
        self._reader = hiredis.Reader()
        self.lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            self._view._on_reply(reply)

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
        self._transport: asyncio.Transport | None = None
        self._state_changed: asyncio.Condition | None = None
        self.telemetry: Telemetry = NULL_TELEMETRY

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
        # Unread bytes on the feed may be an event for this very token: ask Redis instead.
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

    def _on_reply(self, reply: Any) -> None:
        self._heard = time.monotonic()
        if isinstance(reply, list) and reply:
            kind = reply[0]
            if kind == b"message" and len(reply) == 3:
                self.apply(reply[2].decode())
            elif kind == b"subscribe" and not self._live:
                self._clear()
                self._live = True
                log.info("revocation feed live", extra={"event": "revocation_feed_up"})
                self.telemetry.revocation_feed(True)
                self._announce()
        elif isinstance(reply, Exception):  # e.g. NOAUTH: never trust this feed
            log.warning("revocation feed refused: %s", type(reply).__name__)
            if self._transport is not None:
                self._transport.close()

    # -- the subscription ---------------------------------------------------------------

    @property
    def live(self) -> bool:
        """True while the subscription is confirmed and recently heard from."""
        return self._live and time.monotonic() - self._heard <= 3 * self._interval

    def start(self) -> None:
        """Start following the revocation channel in a background task."""
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
        self._live = False
        self._poll = None
        self._clear()
        self._announce()

    async def _connect(self) -> tuple[asyncio.Transport, _FeedProtocol]:
        loop = asyncio.get_running_loop()
        opts = parse_url(self._url)
        protocol = _FeedProtocol(self)
        if "path" in opts:
            transport, _ = await loop.create_unix_connection(lambda: protocol, opts["path"])
        else:
            tls = ssl.create_default_context() if self._url.startswith("rediss://") else None
            transport, _ = await loop.create_connection(
                lambda: protocol, opts["host"], opts.get("port", 6379), ssl=tls
            )
        return transport, protocol

    async def _follow(self) -> None:
        backoff = 0.05
        while not self._stopping:
            try:
                conn, protocol = await asyncio.wait_for(self._connect(), self._connect_timeout)
            except (OSError, TimeoutError):
                conn = None
            if conn is not None:
                self._transport = conn
                try:
                    await self._subscribe_and_watch(conn, protocol)
                    backoff = 0.05
                except OSError:
                    pass
                finally:
                    conn.close()
                    self._transport = None
            self._set_dead()
            await asyncio.sleep(backoff * (0.5 + random.random()))  # noqa: S311
            backoff = min(backoff * 2, self._interval)

    async def _subscribe_and_watch(self, conn: asyncio.Transport, protocol: _FeedProtocol) -> None:
        """Subscribe; return when the connection is lost or silent for a PING's interval."""
        poller = select.poll()
        poller.register(conn.get_extra_info("socket").fileno(), select.POLLIN)
        self._poll = poller
        opts = parse_url(self._url)
        if opts.get("password"):
            conn.write(_command("AUTH", opts.get("username") or "default", opts["password"]))
        conn.write(_command("SUBSCRIBE", REVOCATIONS_CHANNEL))
        pinged = False
        while not self._stopping:
            heard = self._heard
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(protocol.lost), self._interval)
                return
            if self._heard != heard:
                pinged = False
            elif pinged:  # silent for a whole interval after a PING: not trustworthy
                return
            else:
                conn.write(_command("PING"))
                pinged = True
