"""Server wiring: the grpc.aio server with AuthService, health and reflection, the Redis
health monitor, the audit trail and metrics, graceful shutdown, and `--workers N`
processes sharing one port."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import multiprocessing
import signal
from collections.abc import Sequence
from pathlib import Path

import grpc
from authsvc_api.v1 import admin_pb2, admin_pb2_grpc, auth_pb2, auth_pb2_grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from authsvc import audit, logs
from authsvc.accounts import AccountAdmin
from authsvc.clock import Clock, system_clock
from authsvc.config import Settings
from authsvc.embedded_redis import EmbeddedRedis
from authsvc.errors import ConfigError, StoreUnavailable
from authsvc.events import EventSink, Fanout
from authsvc.keyring import KeyRing
from authsvc.keys import KeyProvider, StaticKeys, load_file_keyset, verification_public_keys
from authsvc.metrics import (
    Metrics,
    MetricsEndpoint,
    forget_process,
    multiprocess_dir,
    multiprocess_registry,
)
from authsvc.passwords import PasswordHasher
from authsvc.revocation_view import RevocationView
from authsvc.rpc import AuthServicer
from authsvc.rpc_admin import AdminServicer
from authsvc.rpc_decoding import DecodeGuard
from authsvc.sealing import load_kek
from authsvc.service import AuthService
from authsvc.store import RedisStore
from authsvc.telemetry import NULL_TELEMETRY, Telemetry

log = logging.getLogger(__name__)

SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
ADMIN_SERVICE_NAME = admin_pb2.DESCRIPTOR.services_by_name["AdminService"].full_name
_SERVING = health_pb2.HealthCheckResponse.SERVING
_NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def make_store(settings: Settings, redis_url: str) -> RedisStore:
    """A RedisStore with the configured timeouts, pool size and retries."""
    return RedisStore.from_url(
        redis_url,
        socket_timeout=settings.redis_socket_timeout,
        connect_timeout=settings.redis_connect_timeout,
        pool_size=settings.redis_pool_size,
        retries=settings.redis_retries,
        min_replicas_ack=settings.redis_min_replicas_ack,
    )


def make_hasher(settings: Settings) -> PasswordHasher:
    """The argon2id hasher with the configured parameters."""
    return PasswordHasher(
        settings.argon2_memory_kib,
        settings.argon2_time_cost,
        settings.argon2_parallelism,
        settings.hash_threads,
    )


def make_key_provider(
    settings: Settings,
    store: RedisStore,
    clock: Clock = system_clock,
    sink: EventSink | None = None,
) -> KeyProvider:
    """The signing keys: PEM files when `AUTHSVC_SIGNING_KEY_FILE` is set (the operator
    rotates them), else the Redis key ring (rotated by authsvc). `AUTHSVC_VERIFY_KEY_FILES`
    are accepted in both.

    Raises:
        ConfigError: a key file or the key-encryption key is unusable.
    """
    if settings.signing_key_file:
        return StaticKeys(
            load_file_keyset(
                settings.signing_alg, settings.signing_key_file, settings.verify_key_files
            )
        )
    return KeyRing(
        settings,
        store,
        load_kek(settings),
        clock,
        sink,
        # The key earlier versions generated here signs on, so its tokens stay valid.
        adopt_key_file=settings.data_dir / "keys" / f"signing-{settings.signing_alg.lower()}.pem",
        extra_verification=verification_public_keys(settings.verify_key_files),
    )


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS credentials from the configured PEM files (mTLS with a client CA); None: plaintext."""
    if not settings.tls_cert_file:
        return None
    key = Path(settings.tls_key_file).read_bytes()
    chain = Path(settings.tls_cert_file).read_bytes()
    client_ca = (
        Path(settings.tls_client_ca_file).read_bytes() if settings.tls_client_ca_file else None
    )
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=client_ca, require_client_auth=client_ca is not None
    )


def check_plaintext(settings: Settings) -> None:
    """Refuse to serve plaintext off loopback unless the operator chose it.

    Raises:
        ConfigError: no TLS, a non-loopback listen address, and AUTHSVC_ALLOW_PLAINTEXT
            not set (tokens and passwords would cross the network in clear).
    """
    if settings.tls_cert_file or settings.listens_on_loopback:
        return
    if not settings.allow_plaintext:
        raise ConfigError(
            f"refusing to serve plaintext on the non-loopback address {settings.listen}: "
            "set AUTHSVC_TLS_CERT_FILE and AUTHSVC_TLS_KEY_FILE, or AUTHSVC_ALLOW_PLAINTEXT=true "
            "if a trusted layer (a mesh sidecar) encrypts the traffic"
        )
    log.warning(
        "serving plaintext on a non-loopback address (AUTHSVC_ALLOW_PLAINTEXT=true): "
        "passwords and tokens cross the network in clear",
        extra={"event": "plaintext", "listen": settings.listen},
    )


class AuthServer:
    """One grpc.aio server process: AuthService + health + reflection over one Redis.

    Domain events go to the audit trail, to the metrics when `metrics_listen` is set, and
    to `sink` (tests record them). `serve_metrics=False` (a worker of `--workers N`)
    keeps the metrics but leaves serving them to the supervisor.
    """

    def __init__(
        self,
        settings: Settings,
        redis_url: str,
        *,
        clock: Clock = system_clock,
        interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
        reuse_port: bool = False,
        sink: EventSink | None = None,
        serve_metrics: bool = True,
    ) -> None:
        self.settings = settings
        self.metrics = Metrics() if settings.metrics_listen else None
        telemetry: Telemetry = self.metrics or NULL_TELEMETRY
        sinks: list[EventSink] = [audit.AuditSink()]
        sinks += [s for s in (self.metrics, sink) if s is not None]
        self.sink = Fanout(sinks)
        self._serve_metrics = serve_metrics and self.metrics is not None
        self._metrics_endpoint: MetricsEndpoint | None = None
        self.metrics_port = 0
        self._store = make_store(settings, redis_url)
        self._store.telemetry = telemetry
        self._hasher = make_hasher(settings)
        self._hasher.telemetry = telemetry
        keys = make_key_provider(settings, self._store, clock, self.sink)
        self.view = (
            RevocationView(
                redis_url, settings.health_interval_seconds, settings.redis_connect_timeout
            )
            if settings.revocation_view
            else None
        )
        if self.view is not None:
            self.view.telemetry = telemetry
        self._telemetry = telemetry
        self.service = AuthService(
            settings, self._store, keys, self._hasher, clock, self.view, self.sink,
            telemetry=telemetry,
        )  # fmt: skip
        self.accounts = AccountAdmin(self._store, self._hasher, clock, self.sink)
        if self.metrics is not None:  # outermost, so it times every other interceptor too
            interceptors = [self.metrics.interceptor, *interceptors]
        self._health = HealthServicer()
        self._health_wakeup = asyncio.Event()
        self._monitor: asyncio.Task[None] | None = None
        self._key_follower: asyncio.Task[None] | None = None
        self._server = grpc.aio.server(
            # The decode guard goes last: it wraps the handlers the server registered.
            interceptors=[*interceptors, DecodeGuard()],
            options=[
                ("grpc.so_reuseport", 1 if reuse_port else 0),
                ("grpc.max_receive_message_length", 64 * 1024),
            ],
        )
        auth_pb2_grpc.add_AuthServiceServicer_to_server(
            AuthServicer(self.service, self._health_wakeup.set), self._server
        )
        admin_pb2_grpc.add_AdminServiceServicer_to_server(
            AdminServicer(self.service, self.accounts), self._server
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        if settings.reflection:
            reflection.enable_server_reflection(
                (SERVICE_NAME, ADMIN_SERVICE_NAME,
                 health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                 reflection.SERVICE_NAME),
                self._server,
            )  # fmt: skip
        self._names_indexed = False
        self.port = 0

    async def start(self) -> int:
        """Load the keys, bind, start serving and monitoring Redis; returns the bound port.

        Raises:
            ConfigError: e.g. a key-encryption key that opens none of the ring's keys
                (Redis being down does not stop the start: the keys load once it is back).
        """
        try:
            await self.service.keys.refresh()
        except BaseException:
            await self._store.close()
            self._hasher.close()
            raise
        credentials = server_credentials(self.settings)
        if credentials is None:
            self.port = self._server.add_insecure_port(self.settings.listen)
        else:
            self.port = self._server.add_secure_port(self.settings.listen, credentials)
        if self.port == 0:
            raise OSError(f"cannot listen on {self.settings.listen}")
        if self._serve_metrics:
            assert self.metrics is not None
            self._metrics_endpoint = MetricsEndpoint(
                self.settings.metrics_listen, self.metrics.registry
            )
            self.metrics_port = self._metrics_endpoint.port
        up = await self.service.healthy()
        if up:
            await self._index_names()
        await self._set_health(up)
        await self._server.start()
        self._monitor = asyncio.create_task(self._monitor_redis())
        if isinstance(self.service.keys, KeyRing):
            self._key_follower = asyncio.create_task(self._follow_keys(self.service.keys))
        if self.view is not None:
            self.view.start()
        return self.port

    async def _set_health(self, up: bool) -> None:
        status = _SERVING if up else _NOT_SERVING
        await self._health.set("", status)
        await self._health.set(SERVICE_NAME, status)

    async def _monitor_redis(self) -> None:
        """Report NOT_SERVING while Redis is unreachable and SERVING when it is back.

        Checks every interval, and at once when an RPC saw Redis fail.
        """
        last: bool | None = None
        while True:
            up = await self.service.healthy()
            if up and not self._names_indexed:  # Redis was down at start
                await self._index_names()
            if up != last:
                await self._set_health(up)
                self._telemetry.redis_up(up)
                log.log(
                    logging.INFO if up else logging.WARNING,
                    "redis %s",
                    "reachable" if up else "unreachable",
                    extra={"event": "redis_up" if up else "redis_down"},
                )
                last = up
            self._health_wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._health_wakeup.wait(), self.settings.health_interval_seconds
                )

    async def _follow_keys(self, ring: KeyRing) -> None:
        """Read the key ring every poll interval even when no request comes (an idle
        instance still rotates, prunes and publishes on time)."""
        while True:
            await asyncio.sleep(ring.poll_seconds)
            try:
                await ring.refresh()
            except Exception:  # never let the follower die; each refresh logs its cause
                log.exception("following the signing-key ring failed")

    async def _index_names(self) -> None:
        """Index accounts stored under pre-canonical names (see `RedisStore.index_legacy_names`)."""
        try:
            unreachable = await self._store.index_legacy_names()
        except StoreUnavailable:
            return  # retried by the monitor once Redis answers
        self._names_indexed = True
        for name in unreachable:
            log.warning(
                "account %r shares its canonical name with another account; it logs in "
                "only under this exact spelling: rename or disable one of them",
                name,
                extra={"event": "name_collision"},
            )

    async def stop(self, grace: float | None = None, drain: float | None = None) -> None:
        """Graceful shutdown, in the order rolling restarts need:

        1. health NOT_SERVING (every service name), so clients that health-check stop
           picking this instance;
        2. a drain of `drain` seconds (`shutdown_drain_seconds`) still serving whatever
           arrives: calls already queued inside gRPC when its stop begins are cancelled,
           not finished (grpc/grpc#41785), so the stop waits until clients have moved away;
        3. stop accepting, let in-flight calls finish within `grace`, close Redis.
        """
        await self._health.enter_graceful_shutdown()
        drain = self.settings.shutdown_drain_seconds if drain is None else drain
        if drain > 0:
            log.info("draining for %.1f s", drain, extra={"event": "draining"})
            await asyncio.sleep(drain)
        await self._server.stop(self.settings.grace_shutdown_seconds if grace is None else grace)
        if self.view is not None:
            await self.view.stop()
        for task in (self._monitor, self._key_follower):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._store.close()
        self._hasher.close()
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.stop()

    async def wait(self) -> None:
        """Block until the server stops."""
        await self._server.wait_for_termination()


async def _serve_until_signal(settings: Settings, redis_url: str, worker: bool) -> None:
    server = AuthServer(settings, redis_url, reuse_port=worker, serve_metrics=not worker)
    port = await server.start()
    host = settings.listen.rpartition(":")[0]
    log.info("serving on %s:%d", host, port, extra={"event": "serving"})
    if server.metrics_port:
        log.info("metrics on %s:%d", settings.metrics_listen.rpartition(":")[0],
                 server.metrics_port, extra={"event": "metrics"})  # fmt: skip
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down; finishing in-flight calls", extra={"event": "stopping"})
    await server.stop()


def _worker(settings: Settings, redis_url: str) -> None:
    logs.configure(settings.log_level)
    audit.configure(settings.audit_log)
    asyncio.run(_serve_until_signal(settings, redis_url, worker=True))


def run(settings: Settings) -> None:
    """Run the server (and its embedded Redis when no URL is set) until SIGTERM/SIGINT."""
    logs.configure(settings.log_level)
    check_plaintext(settings)
    audit.configure(settings.audit_log)
    embedded = EmbeddedRedis(settings.data_dir) if settings.uses_embedded_redis else None
    redis_url = embedded.start() if embedded else settings.redis_url
    if embedded:
        log.info("embedded redis at %s", embedded.url, extra={"event": "embedded_redis"})
    # Check the key files (or create the default key-encryption key) once, before any
    # worker starts: a bad file stops the start with one message, and workers share one KEK.
    if settings.signing_key_file:
        load_file_keyset(settings.signing_alg, settings.signing_key_file, settings.verify_key_files)
    else:
        load_kek(settings)
        verification_public_keys(settings.verify_key_files)
    transport = (
        "mTLS" if settings.tls_client_ca_file else "TLS" if settings.tls_cert_file else "plaintext"
    )
    print(
        f"authsvc listening on {settings.listen}, {transport} (Redis: {_describe(redis_url)})",
        flush=True,
    )
    print("create a first user with:  .venv/bin/authsvc user add alice", flush=True)
    try:
        if settings.workers == 1:
            asyncio.run(_serve_until_signal(settings, redis_url, worker=False))
        else:
            _run_workers(settings, redis_url)
    finally:
        if embedded:
            embedded.stop()


def _run_workers(settings: Settings, redis_url: str) -> None:
    if not settings.metrics_listen:
        _supervise(settings, redis_url, None)
        return
    # Every worker writes its values to files there; this process serves their sum.
    with multiprocess_dir() as path:
        endpoint = MetricsEndpoint(settings.metrics_listen, multiprocess_registry(path))
        log.info("metrics of %d workers on %s:%d", settings.workers,
                 settings.metrics_listen.rpartition(":")[0], endpoint.port,
                 extra={"event": "metrics"})  # fmt: skip
        try:
            _supervise(settings, redis_url, path)
        finally:
            endpoint.stop()


def _supervise(settings: Settings, redis_url: str, metrics_dir: str | None) -> None:
    ctx = multiprocessing.get_context("spawn")
    worker_settings = dataclasses.replace(settings, workers=1)
    procs = [
        ctx.Process(target=_worker, args=(worker_settings, redis_url), daemon=False)
        for _ in range(settings.workers)
    ]
    for proc in procs:
        proc.start()

    def forward(_signum: int, _frame: object) -> None:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for proc in procs:
        proc.join()
        if metrics_dir is not None and proc.pid is not None:
            forget_process(proc.pid, metrics_dir)


def _describe(url: str) -> str:
    """A Redis URL without credentials or query (which may hold a password), for logs."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2].partition('?')[0]}"
