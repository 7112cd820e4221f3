"""Prometheus metrics: the gRPC server metrics under the go-grpc-middleware names, and the
`authsvc_*` domain metrics.

`Metrics` is three things at once, wired by the server: a grpc.aio server interceptor
(`grpc_server_*`), an `EventSink` (logins, refreshes, revocations, account changes, key
rotations) and a `Telemetry` (validations, Redis errors, the revocation view, the hashing
queue). With `--workers N` every worker writes its values to files in
`PROMETHEUS_MULTIPROC_DIR` (prometheus-client's multiprocess mode) and the supervisor
serves their sum; the supervisor owns that directory (see `server.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

import grpc
import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from authsvc import events
from authsvc.telemetry import StoreErrorKind
from authsvc.tokens import Invalid

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

#: Seconds; finer than Prometheus' defaults at the low end, where Validate answers.
HANDLING_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)  # fmt: skip
HASH_WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_OK = grpc.StatusCode.OK.name
_GRPC_LABELS = ("grpc_type", "grpc_service", "grpc_method")

#: An RPC behaviour as grpc hands it over (typed loosely by grpc's stubs).
Behavior = Callable[..., Any]


class Metrics:
    """Every metric of one server process, in its own registry."""

    def __init__(self) -> None:
        # Counters export `_total` only: `_created` series would double what teams chart.
        prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        self.grpc_started = Counter(
            "grpc_server_started", "RPCs started on the server.", _GRPC_LABELS, registry=r
        )
        self.grpc_handled = Counter(
            "grpc_server_handled",
            "RPCs completed on the server, regardless of success or failure.",
            (*_GRPC_LABELS, "grpc_code"),
            registry=r,
        )
        self.grpc_handling = Histogram(
            "grpc_server_handling_seconds",
            "Response latency (seconds) of gRPC that had been application-level handled by "
            "the server.",
            _GRPC_LABELS,
            buckets=HANDLING_BUCKETS,
            registry=r,
        )
        self.logins = Counter(
            "authsvc_logins", "Login attempts by outcome.", ("outcome",), registry=r
        )
        self.login_throttles = Counter(
            "authsvc_login_throttles",
            "Logins refused after failed logins, by whose failures: account, source, global.",
            ("scope",),
            registry=r,
        )
        self.refreshes = Counter(
            "authsvc_refreshes", "Refresh calls by outcome.", ("outcome",), registry=r
        )
        self.validations = Counter(
            "authsvc_validations",
            "Validate answers by reason (`valid` for a valid token).",
            ("reason",),
            registry=r,
        )
        self.revocations = Counter(
            "authsvc_revocations",
            "Revocations that took effect, by scope.",
            ("scope",),
            registry=r,
        )
        self.account_changes = Counter(
            "authsvc_account_changes", "Account changes by action.", ("action",), registry=r
        )
        self.key_rotations = Counter(
            "authsvc_key_rotations", "Signing keys that took over.", registry=r
        )
        self.redis_errors = Counter(
            "authsvc_redis_errors",
            "Failed Redis operations, by store operation and error kind.",
            ("operation", "error"),
            registry=r,
        )
        self.redis_reconnects = Counter(
            "authsvc_redis_reconnects",
            "Times the health monitor found Redis reachable again after losing it.",
            registry=r,
        )
        self.redis_reachable = Gauge(
            "authsvc_redis_up",
            "1 while Redis is reachable (with several workers: 1 only if it is for all).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.view_lookups = Counter(
            "authsvc_revocation_view_lookups",
            "Revocation checks answered by the local view (hit) or sent to Redis (miss).",
            ("result",),
            registry=r,
        )
        self.view_live = Gauge(
            "authsvc_revocation_view_live",
            "1 while the revocation view's subscription is live (several workers: all).",
            registry=r,
            multiprocess_mode="livemin",
        )
        self.hash_queue_depth = Gauge(
            "authsvc_password_hash_queue_depth",
            "Password hashes and verifications waiting for a hashing thread.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.hash_wait = Histogram(
            "authsvc_password_hash_wait_seconds",
            "Time a password hash or verification waited for a hashing thread.",
            buckets=HASH_WAIT_BUCKETS,
            registry=r,
        )
        # Every label value exists from the start, so rate() and alerts see zeros, not gaps;
        # the children are kept so the hot path does no label lookup.
        outcomes = ("ok", "throttled", "shed", *(f.value for f in events.LoginFailure))
        self._logins = {o: self.logins.labels(o) for o in outcomes}
        self._throttles = {s: self.login_throttles.labels(s.value) for s in events.ThrottleScope}
        self._refreshes = {o: self.refreshes.labels(o.value) for o in events.RefreshOutcome}
        self._validations: dict[Invalid | None, Any] = {None: self.validations.labels("valid")}
        self._validations.update({r: self.validations.labels(r.value) for r in Invalid})
        for scope in ("token", "session", "user"):
            self.revocations.labels(scope)
        self._view_hit = self.view_lookups.labels("hit")
        self._view_miss = self.view_lookups.labels("miss")
        self._handlers: dict[type[events.Event], Callable[[Any], None]] = {
            events.LoginSucceeded: lambda e: self._logins["ok"].inc(),
            events.LoginFailed: lambda e: self._logins[e.reason.value].inc(),
            events.LoginThrottled: self._throttled,
            events.LoginShed: lambda e: self._logins["shed"].inc(),
            events.Refreshed: lambda e: self._refreshes[e.outcome].inc(),
            events.Revoked: lambda e: self.revocations.labels(e.what).inc(),
            events.AccountChanged: lambda e: self.account_changes.labels(e.action).inc(),
            events.KeyRotated: lambda e: self.key_rotations.inc(),
        }
        self._redis_was_down = False
        self.interceptor = ServerMetricsInterceptor(self)

    def _throttled(self, event: events.LoginThrottled) -> None:
        self._logins["throttled"].inc()
        self._throttles[event.scope].inc()

    # -- EventSink --------------------------------------------------------------------

    def emit(self, event: events.Event) -> None:
        """Count a domain event."""
        handler = self._handlers.get(type(event))
        if handler is not None:
            handler(event)

    # -- Telemetry --------------------------------------------------------------------

    def validated(self, reason: Invalid | None, view_hit: bool | None = None) -> None:
        """Count a Validate answer (and whether the revocation view gave it)."""
        self._validations[reason].inc()
        if view_hit is not None:
            (self._view_hit if view_hit else self._view_miss).inc()

    def store_failed(self, operation: str, kind: StoreErrorKind) -> None:
        """Count a failed Redis operation."""
        self.redis_errors.labels(operation, kind.value).inc()

    def redis_up(self, up: bool) -> None:
        """Record Redis reachability; a return after a loss is a reconnect."""
        if up and self._redis_was_down:
            self.redis_reconnects.inc()
        self._redis_was_down = not up
        self.redis_reachable.set(1 if up else 0)

    def revocation_feed(self, live: bool) -> None:
        """Record the revocation view's state."""
        self.view_live.set(1 if live else 0)

    def hash_queued(self) -> None:
        """One more job waits for a hashing thread."""
        self.hash_queue_depth.inc()

    def hash_started(self, waited_seconds: float) -> None:
        """A job left the queue for a thread after `waited_seconds`."""
        self.hash_queue_depth.dec()
        self.hash_wait.observe(waited_seconds)

    def hash_abandoned(self) -> None:
        """A job left the queue without running."""
        self.hash_queue_depth.dec()


class _MethodMetrics:
    """The metric children of one RPC method, looked up once."""

    __slots__ = ("_handled", "_handled_by_code", "handling", "labels", "started")

    def __init__(self, metrics: Metrics, rpc_type: str, service: str, method: str) -> None:
        self.labels = (rpc_type, service, method)
        self.started = metrics.grpc_started.labels(*self.labels)
        self.handling = metrics.grpc_handling.labels(*self.labels)
        self._handled = metrics.grpc_handled
        self._handled_by_code = {_OK: metrics.grpc_handled.labels(*self.labels, _OK)}

    def done(self, code: str, started_at: float) -> None:
        """Count a finished call with its status name and latency."""
        self.handling.observe(time.perf_counter() - started_at)
        child = self._handled_by_code.get(code)
        if child is None:
            child = self._handled_by_code[code] = self._handled.labels(*self.labels, code)
        child.inc()


def _code_of(context: grpc.aio.ServicerContext[Any, Any], failure: BaseException | None) -> str:
    """The status a call ends with: the code the handler set (or aborted with), else OK;
    an exception that escaped the handler is UNKNOWN, a cancellation CANCELLED."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if failure is None or isinstance(failure, grpc.aio.AbortError):
        return _OK
    if isinstance(failure, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED.name
    return grpc.StatusCode.UNKNOWN.name


def _instrument(behavior: Behavior, m: _MethodMetrics) -> Behavior | None:
    """`behavior` wrapped to count and time each call; None for a synchronous behaviour
    (none are served here, and grpc.aio would treat the wrapper differently)."""
    if inspect.isasyncgenfunction(behavior):

        async def stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            m.started.inc()
            started_at = time.perf_counter()
            failure: BaseException | None = None
            try:
                responses: AsyncIterator[Any] = behavior(request, context)
                async for response in responses:
                    yield response
            except BaseException as exc:
                failure = exc
                raise
            finally:
                m.done(_code_of(context, failure), started_at)

        return stream
    if inspect.iscoroutinefunction(behavior):

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            m.started.inc()
            started_at = time.perf_counter()
            failure: BaseException | None = None
            try:
                outcome: Awaitable[Any] = behavior(request, context)
                return await outcome
            except BaseException as exc:
                failure = exc
                raise
            finally:
                m.done(_code_of(context, failure), started_at)

        return call
    return None


def _rpc_type(handler: grpc.RpcMethodHandler[Any, Any]) -> str:
    if handler.request_streaming:
        return "bidi_stream" if handler.response_streaming else "client_stream"
    return "server_stream" if handler.response_streaming else "unary"


class ServerMetricsInterceptor(grpc.aio.ServerInterceptor):
    """Counts and times every RPC: `grpc_server_started_total`, `grpc_server_handled_total`
    and `grpc_server_handling_seconds`, labelled as go-grpc-middleware labels them."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        # method -> (the handler grpc resolved, our wrapper of it); methods are the
        # registered ones only (unknown names resolve to None), so this stays small.
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        known = self._wrapped.get(method)
        if known is not None and known[0] is handler:
            return known[1]  # type: ignore[no-any-return]
        wrapped = self._wrap(method, handler)
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        service, _, name = method.lstrip("/").rpartition("/")
        m = _MethodMetrics(self._metrics, _rpc_type(handler), service, name)
        des, ser = handler.request_deserializer, handler.response_serializer
        if handler.unary_unary is not None:
            if (b := _instrument(handler.unary_unary, m)) is not None:
                return grpc.unary_unary_rpc_method_handler(b, des, ser)
        elif handler.unary_stream is not None:
            if (b := _instrument(handler.unary_stream, m)) is not None:
                return grpc.unary_stream_rpc_method_handler(b, des, ser)
        elif handler.stream_unary is not None:
            if (b := _instrument(handler.stream_unary, m)) is not None:
                return grpc.stream_unary_rpc_method_handler(b, des, ser)
        elif handler.stream_stream is not None:
            if (b := _instrument(handler.stream_stream, m)) is not None:
                return grpc.stream_stream_rpc_method_handler(b, des, ser)
        return handler


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Scrapes are not worth a log line each."""


class MetricsEndpoint:
    """The `/metrics` HTTP endpoint (prometheus-client's WSGI app) in a daemon thread."""

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        host, _, port = listen.rpartition(":")
        host = host.strip("[]")

        class Server(ThreadingWSGIServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        try:
            self._httpd = make_server(
                host, int(port), make_wsgi_app(registry), Server, handler_class=_QuietHandler
            )
        except OSError as exc:
            raise OSError(f"cannot serve metrics on {listen}: {exc.strerror}") from None
        self.port: int = self._httpd.server_port
        # A short poll interval: stop() waits for the serving loop to notice.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="metrics-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


@contextlib.contextmanager
def multiprocess_dir() -> Iterator[str]:
    """The directory where the workers of this process write their values, exported as
    `PROMETHEUS_MULTIPROC_DIR` for the workers it starts.

    The operator's `PROMETHEUS_MULTIPROC_DIR` when set, else a private temporary one
    (removed afterwards). Either way it is emptied first: values an earlier run left
    there would otherwise be added to this run's.
    """
    given = os.environ.get(MULTIPROC_ENV)
    path = given or tempfile.mkdtemp(prefix="authsvc-metrics-")
    os.makedirs(path, exist_ok=True)
    _clean(path)
    os.environ[MULTIPROC_ENV] = path
    try:
        yield path
    finally:
        if given is None:
            shutil.rmtree(path, ignore_errors=True)
            del os.environ[MULTIPROC_ENV]


def _clean(path: str) -> None:
    for entry in os.scandir(path):
        if entry.name.endswith(".db") and entry.is_file():
            os.unlink(entry.path)


def multiprocess_registry(path: str) -> CollectorRegistry:
    """A registry that sums the values every worker wrote under `path`."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def forget_process(pid: int, path: str) -> None:
    """A worker exited: its gauges (queue depth, Redis and feed state) stop counting;
    its counters keep their values, as counters must."""
    mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
