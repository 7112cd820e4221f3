"""The Redis client for one configured deployment (one Redis, Cluster or Sentinel).

`RedisConnection` builds redis-py's asyncio client for the form of `AUTHSVC_REDIS_URL`
with every setting explicit: timeouts, pool sizes, and redis-py's own retries OFF (its
cluster and sentinel clients retry by default; a replayed rotation would look like token
reuse, so only the store retries, and only idempotent operations).

It also gives what redis-py does not: a *pinned* connection to the master that serves a
key's slot, on which a script and whatever must follow it on the same connection run in
order. `WAIT` counts replicas for the writes of its own connection only, so it must follow
the write there (from another pooled connection it returns at once and looks like
success), and on a Cluster it must reach the slot's master; redis-py also refuses
pipelined EVALSHA in cluster mode. `run_script` is that path: EVALSHA (reloading the
script on NOSCRIPT, following MOVED/ASK), then, when the caller asks for confirmation,
a fence write and `WAIT n` (or a PING when no replica must acknowledge).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import os
import ssl
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import redis.asyncio as aioredis
import redis.exceptions as rex
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import AbstractConnection, Connection, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from authsvc.redis_target import RedisTarget, Topology, parse_redis_url
from authsvc.redis_wire import sentinel_master

UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    rex.ConnectionError,  # includes MasterNotFoundError, MaxConnectionsError
    rex.TimeoutError,
    OSError,
    rex.ClusterDownError,  # includes MasterDownError
    rex.TryAgainError,
    rex.ReadOnlyError,  # a master demoted under us
    rex.RedisClusterException,  # not a RedisError! includes SlotNotCoveredError
)
"""Errors that mean "Redis (or this slot's master) cannot serve us right now"."""

_REDIRECTS = 3
_TOPOLOGY_REFRESH_MIN_INTERVAL = 0.1


def closed_under_us(exc: BaseException) -> bool:
    """True for redis-py failing on a connection another task closed while it was in use.

    redis-py's cluster client disconnects every node's connections, in use or not, on
    CLUSTERDOWN (and while re-reading the slot map); a call in flight on one of them then
    fails inside redis-py with an AttributeError (no socket left). That is the cluster
    being unavailable, not a bug of ours: only errors raised in redis-py's own code count.
    """
    if not isinstance(exc, AttributeError):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}redis{os.sep}" in tb.tb_frame.f_code.co_filename


class ReplicationNotConfirmed(rex.RedisError):
    """Raised when fewer replicas than required acknowledged a write in time."""


@dataclasses.dataclass(frozen=True)
class ClientOptions:
    """Explicit client settings (redis-py's defaults change between versions)."""

    socket_timeout: float
    connect_timeout: float
    pool_size: int
    client_name: str = "authsvc"


@dataclasses.dataclass(frozen=True)
class LuaScript:
    """A Lua script and its SHA1 (what EVALSHA names)."""

    text: str

    @property
    def sha(self) -> str:
        """The SHA1 hex digest Redis knows the script by."""
        return hashlib.sha1(self.text.encode(), usedforsecurity=False).hexdigest()


class _SentinelMaster:
    """Where the sentinels say the master is; asked at every new connection."""

    def __init__(self, target: RedisTarget, timeout: float) -> None:
        self._target = target
        self._timeout = timeout
        self._tls = ssl.create_default_context(cafile=target.ssl_ca_certs) if target.tls else None

    async def address(self) -> tuple[str, int]:
        t = self._target
        try:
            return await sentinel_master(t.nodes, t.master_name, self._timeout, self._tls)
        except OSError as exc:
            raise rex.ConnectionError(str(exc)) from exc


class _MasterConnection(Connection):
    """A connection to the node the sentinels name as master when it connects, checked
    with ROLE; a READONLY answer (the node was demoted since) drops it."""

    def __init__(self, *, sentinel_master: _SentinelMaster, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._sentinel_master = sentinel_master

    async def _connect(self) -> None:
        self.host, self.port = await self._sentinel_master.address()
        await super()._connect()  # type: ignore[no-untyped-call]

    async def on_connect_check_health(self, check_health: bool = True) -> None:
        await super().on_connect_check_health(check_health=check_health)
        await self.send_command("ROLE")
        role = await super().read_response()
        if not role or str(role[0]) != "master":
            raise rex.ConnectionError("the node the sentinels name is not a master (yet)")

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)
        except rex.ReadOnlyError:
            await self.disconnect()
            raise


class _MasterSSLConnection(_MasterConnection, SSLConnection):
    """`_MasterConnection` over TLS."""


class RedisConnection:
    """redis-py's asyncio client for one deployment, plus pinned script execution."""

    def __init__(self, url: str, options: ClientOptions) -> None:
        self.target: RedisTarget = parse_redis_url(url)
        self._options = options
        self._refreshed = 0.0
        self._refresh_lock = asyncio.Lock()
        self.client: Any = self._build()
        """The command client: `redis.asyncio.Redis` or `redis.asyncio.RedisCluster`."""

    @property
    def topology(self) -> Topology:
        """One Redis, Cluster or Sentinel."""
        return self.target.topology

    # -- building ---------------------------------------------------------------------

    def _common(self) -> dict[str, Any]:
        t, o = self.target, self._options
        kwargs: dict[str, Any] = {
            "socket_timeout": o.socket_timeout,
            "socket_connect_timeout": o.connect_timeout,
            "health_check_interval": 0,
            "decode_responses": True,
            "client_name": o.client_name,
            "protocol": 2,
        }
        if t.username is not None:
            kwargs["username"] = t.username
        if t.password is not None:
            kwargs["password"] = t.password
        return kwargs

    def _tls(self) -> dict[str, Any]:
        t = self.target
        if not t.tls:
            return {}
        tls: dict[str, Any] = {"ssl": True}
        if t.ssl_ca_certs:
            tls["ssl_ca_certs"] = t.ssl_ca_certs
        return tls

    def _build(self) -> Any:
        t, o = self.target, self._options
        no_retry = Retry(NoBackoff(), 0)
        if t.topology is Topology.SINGLE:
            # A blocking pool: when every connection is busy a call waits (up to the
            # connect timeout) for one instead of failing at once as if Redis were down.
            pool = aioredis.BlockingConnectionPool.from_url(
                t.url,
                max_connections=o.pool_size,
                timeout=o.connect_timeout,
                retry=no_retry,
                retry_on_timeout=False,
                **self._common(),
            )
            return aioredis.Redis(connection_pool=pool)
        if t.topology is Topology.CLUSTER:
            return RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in t.nodes],
                max_connections=o.pool_size,  # per node
                retry=no_retry,
                require_full_coverage=False,  # serve the slots that are up
                reinitialize_steps=5,
                **self._common(),
                **self._tls(),
            )
        tls = self._tls()
        tls.pop("ssl", None)
        pool = aioredis.BlockingConnectionPool(
            connection_class=_MasterSSLConnection if t.tls else _MasterConnection,
            sentinel_master=_SentinelMaster(t, o.connect_timeout),
            max_connections=o.pool_size,
            timeout=o.connect_timeout,
            retry=no_retry,
            host="",  # set from the sentinels' answer at each connect
            **self._common(),
            **tls,
        )
        return aioredis.Redis(connection_pool=pool)

    async def close(self) -> None:
        """Close every connection."""
        if self.topology is Topology.CLUSTER:
            await self.client.aclose()
        else:
            await self.client.aclose(close_connection_pool=True)

    # -- health and topology ----------------------------------------------------------

    async def ping(self) -> bool:
        """True when every master answers (each shard's, on a Cluster)."""
        if self.topology is Topology.CLUSTER:
            await self.client.initialize()
            await self.client.ping(target_nodes=RedisCluster.PRIMARIES)
            return True
        return bool(await self.client.ping())

    async def replicas_known(self) -> bool:
        """True when the deployment has replicas (each master's `INFO replication`, or the
        Cluster's slot map)."""
        if self.topology is Topology.CLUSTER:
            await self.client.initialize()
            slots = self.client.nodes_manager.slots_cache.values()
            return any(len(nodes) > 1 for nodes in slots)
        info = await self.client.info("replication")
        return int(info.get("connected_slaves", 0)) > 0

    async def after_connection_error(self) -> None:
        """Drop idle connections (after a restart they are all dead) and, on a Cluster,
        re-read the slot map (at most every 100 ms however many calls failed)."""
        with contextlib.suppress(Exception):
            if self.topology is not Topology.CLUSTER:
                await self.client.connection_pool.disconnect(inuse_connections=False)
                return
            async with self._refresh_lock:
                if time.monotonic() - self._refreshed < _TOPOLOGY_REFRESH_MIN_INTERVAL:
                    return
                self._refreshed = time.monotonic()
                for node in self.client.get_nodes():
                    await node.disconnect_free_connections()
                await self.client.nodes_manager.initialize()

    # -- pinned execution -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _pinned(self, key: str, ask: tuple[str, int] | None) -> AsyncIterator[_Pinned]:
        """A connection to the master serving `key` (or the ASK target), released after;
        disconnected first if anything failed, so no reply is ever left unread on it."""
        release: Callable[[AbstractConnection], Any]
        if self.topology is Topology.CLUSTER:
            await self.client.initialize()
            node = (
                self.client.get_node(host=ask[0], port=ask[1])
                if ask
                else self.client.get_node_from_key(key)
            )
            if node is None:
                raise rex.SlotNotCoveredError(f"no node for slot of {key!r}")
            conn: AbstractConnection = node.acquire_connection()
            release = node.release
        else:
            pool = self.client.connection_pool
            conn = await pool.get_connection()
            release = pool.release
        ok = False
        try:
            yield _Pinned(conn, asking=ask is not None)
            ok = True
        finally:
            if not ok:
                with contextlib.suppress(Exception):
                    await conn.disconnect()
            result = release(conn)
            if asyncio.iscoroutine(result):
                await result

    async def run_script(
        self,
        script: LuaScript,
        keys: Sequence[str],
        args: Sequence[Any],
        *,
        confirm: Callable[[Any], bool],
        replicas: int,
        wait_ms: int,
        fence_key: str,
    ) -> Any:
        """Run a script on the master of its keys' slot; when `confirm(result)`, make
        sure the write is safe before returning: with `replicas` > 0, a fence write
        (`SET fence_key 1 PX 1000`, so even a script that changed nothing this time
        covers an earlier attempt's write) and `WAIT replicas wait_ms` on the same
        connection; else a PING, which Redis answers only after it has written what the
        script published to every subscriber's socket.

        Raises:
            ReplicationNotConfirmed: fewer replicas acknowledged in time.
            redis errors: as redis-py raises them (see UNAVAILABLE_ERRORS).
        """
        evalsha = ("EVALSHA", script.sha, len(keys), *keys, *args)
        always = confirm is _ALWAYS and replicas > 0
        ask: tuple[str, int] | None = None
        for _ in range(_REDIRECTS):
            try:
                async with self._pinned(keys[0], ask) as pinned:
                    confirmation = _confirmation(replicas, wait_ms, fence_key)
                    replies = await pinned.run(evalsha, *(confirmation if always else ()))
                    if isinstance(replies[0], rex.NoScriptError):
                        await pinned.run_ok(("SCRIPT", "LOAD", script.text))
                        replies = await pinned.run(evalsha, *(confirmation if always else ()))
                    result = _raise_error(replies[0])
                    if not always and confirm(result):
                        replies = [result, *await pinned.run(*confirmation)]
                    if len(replies) > 1:
                        for reply in replies[1:]:
                            _raise_error(reply)
                        if replicas > 0 and int(replies[-1]) < replicas:
                            raise ReplicationNotConfirmed(
                                f"{replies[-1]} of {replicas} replicas acknowledged"
                            )
                    return result
            except rex.MovedError:
                ask = None
                self._refreshed = 0.0
                await self.after_connection_error()
            except rex.AskError as exc:
                ask = (exc.host, int(exc.port))
            except UNAVAILABLE_ERRORS:
                await self.after_connection_error()
                raise
        raise rex.ClusterError("too many redirections")


def _ALWAYS(_: Any) -> bool:
    return True


ALWAYS = _ALWAYS
"""`confirm` for writes that always take power away: confirm whatever the script did."""


def _confirmation(replicas: int, wait_ms: int, fence_key: str) -> tuple[tuple[Any, ...], ...]:
    if replicas <= 0:
        return (("PING",),)
    return (("SET", fence_key, "1", "PX", 1000), ("WAIT", replicas, wait_ms))


def _raise_error(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply


class _Pinned:
    """Commands sent in one write on one connection; replies read in order."""

    def __init__(self, conn: AbstractConnection, asking: bool) -> None:
        self._conn = conn
        self._asking = asking

    async def run(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Send `commands` at once; return every reply, error replies as exceptions (so
        every reply is read and the connection stays in step)."""
        wire: list[tuple[Any, ...]] = []
        for command in commands:
            if self._asking and command[0] != "PING" and command[0] != "WAIT":
                wire.append(("ASKING",))
            wire.append(command)
        replies: list[Any] = []
        try:
            await self._conn.send_packed_command(self._conn.pack_commands(wire))
            for command in wire:
                try:
                    reply = await self._conn.read_response()
                except rex.ResponseError as exc:
                    reply = exc
                if command[0] != "ASKING":
                    replies.append(reply)
        except AttributeError as exc:
            if closed_under_us(exc):
                raise rex.ConnectionError("connection closed during the call") from exc
            raise
        return replies

    async def run_ok(self, command: tuple[Any, ...]) -> Any:
        """One command; its reply, or its error raised."""
        return _raise_error((await self.run(command))[0])
