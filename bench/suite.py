"""The whole bench: start Redis and the server, run every workload and side measurement.

Each phase is independent: one that fails is noted and the others still run, so a report
always comes out (its targets then say NOT RUN or FAIL).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import secrets
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from authsvc_api.v1 import auth_pb2, auth_pb2_grpc
from grpc_health.v1 import health_pb2

from authsvc.config import Settings
from authsvc.redis_process import free_port
from bench import (
    argon2_rate,
    h2load,
    interceptor,
    metrics_cost,
    profile,
    server_verify,
    session_memory,
)
from bench import results as names
from bench.checks import Probe, health_probe, login_probe, run_probes, validate_probe
from bench.cluster import (
    RedisServer,
    ServerProcess,
    add_client,
    add_user,
    metrics_sample,
    server_env,
)
from bench.options import Options
from bench.results import BenchResults, RssGrowth
from bench.runner import H2Target, Runner, summary
from bench.stats import LoadResult, combined
from bench.workloads import Account, WorkloadSpec
from tests.relay import SourceRelay
from tests.topologies import ClusterDeployment

SCOPES = "read,write"
USERS = 8
MIX = (("Validate", 90), ("Refresh", 6), ("Revoke", 3), ("Login", 1))
_HEALTH = H2Target("/grpc.health.v1.Health/Check", health_pb2.HealthCheckRequest())
_VALIDATE_PATH = "/authsvc.v1.AuthService/Validate"
_BAD_SIG = auth_pb2.INVALID_REASON_BAD_SIGNATURE


def tamper(token: str) -> str:
    """`token` with one character of its signature changed: a well-formed forgery."""
    head, _, sig = token.rpartition(".")
    i = len(sig) // 2
    return f"{head}.{sig[:i]}{'A' if sig[i] != 'A' else 'B'}{sig[i + 1 :]}"


@dataclasses.dataclass
class _Background:
    """A Python-generator load run in a thread while another run is measured."""

    label: str
    run: Runner
    spec: WorkloadSpec
    concurrency: int
    started: threading.Event = dataclasses.field(default_factory=threading.Event)
    result: LoadResult | None = None
    failed: list[Exception] = dataclasses.field(default_factory=list)

    def drive(self) -> None:
        """Run for longer than the measured run (warm-up included); sets `started` when
        its own measured window begins."""
        try:
            self.result = self.run.python(
                self.label,
                self.spec,
                [],
                processes=1,
                concurrency=self.concurrency,
                started=self.started,
                duration=self.run.duration + self.run.warmup + 5,
            )
        except Exception as exc:
            self.failed.append(exc)
            self.started.set()


class Bench:
    """One run of the bench; `run()` returns every figure."""

    def __init__(self, opts: Options, say: Callable[[str], None]) -> None:
        self.opts = opts
        self.say = say
        self.res = BenchResults()
        self._password = "bench-" + secrets.token_urlsafe(12)
        self._accounts: list[Account] = []
        self._token = ""
        self._h2: str | None = None
        self._target = ""
        self._relays: dict[str, SourceRelay] = {}

    def run(self) -> BenchResults:
        """Run every phase; always tears down what it started."""
        self._meta()
        if self.opts.generator == "auto":
            self._h2 = h2load.find_or_install(self.opts.install, self.say)
            if self._h2 is None:
                self._note("h2load unavailable: the Python generator drives every RPC instead")
        else:
            self._note("--generator python: h2load not used")
        with tempfile.TemporaryDirectory(prefix="authsvc-bench-") as tmp:
            work = Path(tmp)
            redis = RedisServer(work / "redis")
            self.say("starting redis-server and authsvc ...")
            redis.start()
            try:
                self._with_redis(redis, work)
            finally:
                redis.stop()
            if self.opts.cluster:
                self._phase("cluster", lambda: self._cluster(work / "cluster"))
        self.res.set_ratios()
        return self.res

    def _with_redis(self, redis: RedisServer, work: Path) -> None:
        env = server_env(redis.url, work / "data", f"127.0.0.1:{free_port()}")
        # Long enough that the benchmark's token outlives any run; the size is the same.
        env["AUTHSVC_ACCESS_TTL_SECONDS"] = "3600"
        self._create_accounts(env)
        server = ServerProcess(env, 1, work / "server.log")
        server.start()
        try:
            self._single_process(server, redis, work)
        finally:
            for relay in self._relays.values():
                relay.close()
            self._relays.clear()
            server.stop()
        self._phase("metrics cost", lambda: self._metrics_cost(env, work))
        if self.opts.scale_workers > 1:
            self._phase("--workers scaling", lambda: self._scaling(env, work))

    # -- setup ------------------------------------------------------------------------

    def _create_accounts(self, env: dict[str, str]) -> None:
        self.say(f"creating {USERS} users, 1 service account, 1 memory-test user (authsvc CLI)")
        names_ = [f"bench-u{i}" for i in range(USERS)] + ["bench-mem"]
        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda n: add_user(env, n, self._password, SCOPES), names_))
        self._accounts = [Account(n, self._password) for n in names_[:USERS]]
        secret = add_client(env, "bench-svc", "read")
        self._accounts.append(Account("bench-svc", secret))
        self._mem_account = Account("bench-mem", self._password)

    def _login_token(self, target: str) -> str:
        with grpc.insecure_channel(target) as channel:
            stub = auth_pb2_grpc.AuthServiceStub(channel)
            acct = self._accounts[0]
            reply = stub.Login(
                auth_pb2.LoginRequest(username=acct.name, password=acct.secret), timeout=30
            )
            return str(reply.access_token)

    # -- phases -----------------------------------------------------------------------

    def _phase(self, label: str, body: Callable[[], None]) -> None:
        try:
            body()
        except Exception as exc:
            self._note(f"phase '{label}' failed: {exc!r}")
            self.say(f"!! {label} failed: {exc!r}")

    def _note(self, text: str) -> None:
        self.res.notes.append(text)

    def _runner(self, target: str, workers: int, work: Path) -> Runner:
        o = self.opts
        return Runner(
            target,
            workers,
            self._h2,
            work,
            o.h2_clients,
            o.concurrency,
            o.py_processes,
            o.duration,
            o.warmup,
            self.say,
        )

    def _probes(self, target: str) -> dict[str, list[Probe]]:
        user = self._accounts[0].name
        valid = validate_probe(target, self._token, True, 0, user)
        invalid = validate_probe(
            target, tamper(self._token), False, auth_pb2.INVALID_REASON_BAD_SIGNATURE, user
        )
        health = health_probe(target)
        login = login_probe(target, user, self._accounts[0].secret)
        return {
            "health": [health],
            "valid": [valid],
            "invalid": [invalid],
            "refresh": [health, valid],
            "login": [login],
            "mixed": [valid, login],
        }

    def _single_process(self, server: ServerProcess, redis: RedisServer, work: Path) -> None:
        target = self._target = server.target
        self._token = self._login_token(target)
        run = self._runner(target, 1, work)
        probes = self._probes(target)
        accounts = tuple(self._accounts)
        bad = tamper(self._token)
        valid_h2 = H2Target(_VALIDATE_PATH, auth_pb2.ValidateRequest(access_token=self._token))
        valid = WorkloadSpec("validate", token=self._token)
        invalid_h2 = H2Target(_VALIDATE_PATH, auth_pb2.ValidateRequest(access_token=bad))
        invalid = WorkloadSpec("validate", token=bad, expect_valid=False, expect_reason=_BAD_SIG)
        health = WorkloadSpec("health")
        refresh = WorkloadSpec("refresh", accounts=accounts)
        login = WorkloadSpec("login", accounts=accounts)
        mixed = WorkloadSpec("mixed", accounts=accounts, mix=MIX)

        self._record(lambda: run.constant(names.HEALTH, _HEALTH, health, probes["health"]))
        self._record(lambda: run.constant(names.VALIDATE_VALID, valid_h2, valid, probes["valid"]))
        self._record(
            lambda: self._validate_with_logins(run, valid_h2, valid, probes["valid"], accounts)
        )
        if self.opts.flood_concurrency:
            self._record(
                lambda: self._validate_with_flood(run, valid_h2, valid, probes["valid"], accounts)
            )
        self._record(
            lambda: run.constant(names.VALIDATE_INVALID, invalid_h2, invalid, probes["invalid"])
        )
        if self._h2 is not None:
            self._record(lambda: run.python(names.HEALTH, health, probes["health"]))
            self._record(lambda: run.python(names.VALIDATE_VALID, valid, probes["valid"]))
        self._record(lambda: run.python(names.REFRESH, refresh, probes["refresh"]))
        if self.opts.flood_concurrency:
            self._record(lambda: self._refresh_with_flood(run, refresh, probes["refresh"]))
        # Right before Login: on a noisy machine, adjacent measurements compare best.
        self._phase("argon2 baseline", self._argon2)
        self._record(lambda: run.python(names.LOGIN, login, probes["login"]))
        self._record(lambda: run.python(names.MIXED, mixed, probes["mixed"]))
        revoke = WorkloadSpec("revoke", accounts=accounts)
        self._record(lambda: run.python(names.REVOKE, revoke, probes["health"]))
        if self.opts.profile:

            def validate_load(window: threading.Event) -> object:
                window.set()
                return run.constant("Validate (profiled)", valid_h2, valid, probes["valid"])

            def refresh_load(window: threading.Event) -> object:
                return run.python("Refresh (profiled)", refresh, probes["refresh"], started=window)

            self._phase("profile", lambda: self._profile(server, "Validate", validate_load))
            self._phase("profile", lambda: self._profile(server, "Refresh", refresh_load))
        self._phase("session memory", lambda: self._session_memory(target, redis))
        self._phase("server interceptor", lambda: self._server_verify(target))
        self._phase("client interceptor", lambda: self._interceptor(target))
        if self.opts.rss_calls:
            self._phase("RSS", lambda: self._rss(run, server, valid_h2, valid, probes["valid"]))

    def _cluster(self, work: Path) -> None:
        """The same RPCs on a 3-master / 3-replica Redis Cluster (the test fixture's), with
        the Python generator, and Revoke once more without the replica acknowledgement."""
        self.say("starting a 3-master / 3-replica Redis Cluster ...")
        cluster = ClusterDeployment(work).start()
        try:
            for acks in ("", "0"):
                env = server_env(cluster.url, work / "data", f"127.0.0.1:{free_port()}")
                env["AUTHSVC_ACCESS_TTL_SECONDS"] = "3600"
                env["AUTHSVC_REDIS_MIN_REPLICAS_ACK"] = acks
                if not acks:
                    self._create_accounts(env)
                server = ServerProcess(env, 1, work / f"server{acks}.log")
                server.start()
                try:
                    self._cluster_rows(server.target, work, with_ack=not acks)
                finally:
                    server.stop()
        finally:
            cluster.stop()

    def _cluster_rows(self, target: str, work: Path, with_ack: bool) -> None:
        self._token = self._login_token(target)
        run = self._runner(target, 1, work)
        probes = self._probes(target)
        accounts = tuple(self._accounts)
        revoke = WorkloadSpec("revoke", accounts=accounts)
        c = names.CLUSTER
        if not with_ack:
            self._record(lambda: run.python(c + names.REVOKE_NO_ACK, revoke, probes["health"]))
            return
        valid = WorkloadSpec("validate", token=self._token)
        refresh = WorkloadSpec("refresh", accounts=accounts)
        login = WorkloadSpec("login", accounts=accounts)
        self._record(lambda: run.python(c + names.HEALTH, WorkloadSpec("health"), []))
        self._record(lambda: run.python(c + names.VALIDATE_VALID, valid, probes["valid"]))
        self._record(lambda: run.python(c + names.REFRESH, refresh, probes["refresh"]))
        self._record(lambda: run.python(c + names.LOGIN, login, probes["login"]))
        self._record(lambda: run.python(c + names.REVOKE, revoke, probes["health"]))

    def _record(self, load: Callable[[], LoadResult]) -> None:
        """Run one load as a phase and keep its result as a table row."""
        self._phase("load run", lambda: self.res.runs.append(load()))

    def _argon2(self) -> None:
        s = Settings()
        self.say(
            f"bare argon2id verify rate, m={s.argon2_memory_kib} KiB t={s.argon2_time_cost} "
            f"p={s.argon2_parallelism}, {s.hash_threads} threads ..."
        )
        rate = argon2_rate.verify_rate(
            s.argon2_memory_kib,
            s.argon2_time_cost,
            s.argon2_parallelism,
            s.hash_threads,
            self.opts.argon2_seconds,
        )
        self.res.argon2_rate, self.res.argon2_threads = rate, s.hash_threads
        self.say(f"  -> {rate:.1f} verifications/s")

    def _validate_with_logins(
        self,
        run: Runner,
        h2: H2Target,
        spec: WorkloadSpec,
        probes: list[Probe],
        accounts: tuple[Account, ...],
    ) -> LoadResult:
        n = self.opts.login_concurrency
        self.say(f"{names.VALIDATE_WITH_LOGINS}: starting {n} Logins in flight ...")
        logins = _Background("Logins in flight", run, WorkloadSpec("login", accounts=accounts), n)
        return self._with_background(
            lambda: run.constant(names.VALIDATE_WITH_LOGINS, h2, spec, probes), [logins]
        )

    def _flood(self, run: Runner) -> _Background:
        """Bad logins at made-up names from one source, 127.0.0.3 (through a relay)."""
        relay = self._relay("127.0.0.3")
        spec = WorkloadSpec("flood", expect_codes=("UNAUTHENTICATED", "RESOURCE_EXHAUSTED"))
        flood_run = run.aimed_at(relay.target)
        return _Background(
            "bad Logins in flight from 127.0.0.3", flood_run, spec, self.opts.flood_concurrency
        )

    def _relay(self, source_ip: str) -> SourceRelay:
        if source_ip not in self._relays:
            port = int(self._target.rpartition(":")[2])
            self._relays[source_ip] = SourceRelay(port, source_ip)
        return self._relays[source_ip]

    def _validate_with_flood(
        self,
        run: Runner,
        h2: H2Target,
        spec: WorkloadSpec,
        probes: list[Probe],
        accounts: tuple[Account, ...],
    ) -> LoadResult:
        """The "+ 20 Logins" run again, the Logins now from 127.0.0.2, while another
        source floods the server with bad logins."""
        n = self.opts.login_concurrency
        name = names.VALIDATE_WITH_FLOOD
        self.say(f"{name}: {n} Logins from 127.0.0.2 and a flood from 127.0.0.3 ...")
        honest_run = run.aimed_at(self._relay("127.0.0.2").target)
        logins = WorkloadSpec("login", accounts=accounts)
        honest = _Background("Logins in flight from 127.0.0.2", honest_run, logins, n)
        return self._with_background(
            lambda: run.constant(name, h2, spec, probes), [honest, self._flood(run)]
        )

    def _refresh_with_flood(
        self, run: Runner, spec: WorkloadSpec, probes: list[Probe]
    ) -> LoadResult:
        self.say(f"{names.REFRESH_WITH_FLOOD}: a bad-login flood from 127.0.0.3 ...")
        return self._with_background(
            lambda: run.python(names.REFRESH_WITH_FLOOD, spec, probes), [self._flood(run)]
        )

    def _with_background(
        self, measure: Callable[[], LoadResult], background: list[_Background]
    ) -> LoadResult:
        """Run `measure` while every background load runs (each started and warmed up
        first); their outcomes become notes, their errors and wrong answers the row's."""
        threads = [threading.Thread(target=b.drive, daemon=True) for b in background]
        for b, thread in zip(background, threads, strict=True):
            thread.start()
            b.started.wait(timeout=300)
            if b.failed:
                raise RuntimeError(f"background {b.label} failed: {b.failed[0]!r}")
        result = measure()
        for b, thread in zip(background, threads, strict=True):
            thread.join()
            if b.failed or b.result is None:
                raise RuntimeError(f"background {b.label} failed: {b.failed[:1]!r}")
            codes = ", ".join(f"{k} {v}" for k, v in sorted(b.result.codes.items()))
            outcome = f"{summary(b.result)} ({codes})"
            result.notes.append(f"{b.concurrency} {b.label} meanwhile: {outcome}")
            result.errors += b.result.errors
            result.wrong += b.result.wrong
            self.say(f"  background {b.label}: {outcome}")
        return result

    def _profile(
        self, server: ServerProcess, label: str, load: Callable[[threading.Event], object]
    ) -> None:
        """Sample the server with py-spy while `load` runs; `load` sets the event when its
        measured window starts, so that set-up (e.g. Logins for Refresh) is not sampled."""
        binary = profile.find_py_spy()
        if binary is None:
            self._note("profile skipped: py-spy not installed (pip install py-spy)")
            return
        raw = Path(tempfile.mkdtemp(prefix="authsvc-profile-")) / "profile.txt"
        self.say(f"profile: py-spy on pid {server.pid} during a {label} run (not a table row) ...")
        window = threading.Event()
        spies: list[subprocess.Popen[bytes]] = []

        def start_when_measuring() -> None:
            if window.wait(timeout=300):
                seconds = max(1.0, self.opts.duration - 1)
                spies.append(profile.start(binary, server.pid, seconds, raw))

        starter = threading.Thread(target=start_when_measuring, daemon=True)
        starter.start()
        load(window)
        window.set()
        starter.join()
        _, err = spies[0].communicate(timeout=60)
        if spies[0].returncode != 0 or not raw.exists():
            self._note(f"profile failed: {err.decode(errors='replace').strip()[-300:]}")
            return
        self.res.profile[label] = top = profile.summarize(raw)
        raw.unlink()
        for name, pct in top["self"][:6]:
            self.say(f"  {pct:5.1f}% self  {name}")

    def _session_memory(self, target: str, redis: RedisServer) -> None:
        n = self.opts.session_logins
        self.say(f"Redis memory per session: {n} logins of one fresh account ...")
        client = redis.client()
        try:
            mem = session_memory.measure(target, client, self._mem_account, n)
        finally:
            client.close()
        self.res.session_memory = mem
        self.say(
            f"  -> {mem.per_session:.0f} B per session by MEMORY USAGE ({mem.live_sessions} live)"
        )

    def _server_verify(self, target: str) -> None:
        s = Settings()
        seconds = self.opts.micro_seconds
        self.say("server interceptor: local verification vs a Validate round trip ...")
        cost = server_verify.measure(target, self._token, s.issuer, s.default_audience, seconds)
        self.res.server_verify = cost
        self.say(
            f"  -> per call: no check {cost.bare_us:.0f} us, local {cost.local_us:.0f} us "
            f"(+{cost.local_overhead_us:.0f}), local+Validate {cost.remote_us:.0f} us "
            f"(+{cost.remote_overhead_us:.0f})"
        )

    def _interceptor(self, target: str) -> None:
        seconds = self.opts.micro_seconds
        self.say("client interceptor overhead vs a bare channel (sequential Health/Check) ...")
        self.res.interceptor.append(interceptor.measure_library(target, self._accounts[1], seconds))
        self.res.interceptor.append(interceptor.measure_reference(target, self._token, seconds))
        for cost in self.res.interceptor:
            self.say(
                f"  {cost.label}: {cost.direct_us:.1f} us per call directly, "
                f"{cost.overhead_us:+.1f} us on the wire"
            )

    def _rss(
        self,
        run: Runner,
        server: ServerProcess,
        h2: H2Target,
        spec: WorkloadSpec,
        probes: list[Probe],
    ) -> None:
        calls = self.opts.rss_calls
        self.say(f"server RSS around {calls:,} Validate calls ...")
        trace: list[tuple[float, int]] = []
        stop = threading.Event()
        started = time.monotonic()

        def sample() -> None:
            while not stop.wait(1.0):
                trace.append((round(time.monotonic() - started, 1), server.rss_kib()))

        before = server.rss_kib()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            result = self._rss_load(run, h2, spec, probes, calls)
        finally:
            stop.set()
            sampler.join()
        time.sleep(1.0)
        after = server.rss_kib()
        result.name = names.RSS_RUN
        self.res.runs.append(result)
        self.res.rss = RssGrowth(result.requests, before, after, trace)
        self.say(
            f"  RSS {before / 1024:.1f} -> {after / 1024:.1f} MiB "
            f"({100 * self.res.rss.growth:+.2f}%), {summary(result)}"
        )

    def _rss_load(
        self, run: Runner, h2: H2Target, spec: WorkloadSpec, probes: list[Probe], calls: int
    ) -> LoadResult:
        if self._h2 is None:
            validate = self.res.find(names.VALIDATE_VALID)
            rate = validate.rps if validate and validate.rps else 1000.0
            return run.python(names.RSS_RUN, spec, probes, duration=max(1.0, calls / rate))
        before = run_probes(probes)
        job = run.h2_job(names.RSS_RUN, h2, before.response_bytes, count=calls)
        result = h2load.run(
            self._h2,
            run.target,
            job,
            1,
            run.workdir / "h2-rss.log",
            on_line=lambda s: self.say("  " + s),
        )
        return run.finish(result, before, run_probes(probes))

    def _metrics_cost(self, env: dict[str, str], work: Path) -> None:
        """Validate on two fresh servers, equal but for AUTHSVC_METRICS_LISTEN, in
        alternating runs (off, on, on, off, ...: drift on a noisy machine cancels out),
        then the same cost timed directly."""
        metrics_listen = f"127.0.0.1:{free_port()}"
        shapes = {
            names.VALIDATE_METRICS_OFF: {},
            names.VALIDATE_METRICS_ON: {"AUTHSVC_METRICS_LISTEN": metrics_listen},
        }
        self.say("starting two fresh servers, metrics off and on ...")
        servers = {
            name: ServerProcess(
                {**env, **extra, "AUTHSVC_LISTEN": f"127.0.0.1:{free_port()}"}, 1,
                work / f"server-metrics-{'on' if extra else 'off'}.log",
            )
            for name, extra in shapes.items()
        }  # fmt: skip
        runs: dict[str, list[LoadResult]] = {name: [] for name in shapes}
        try:
            for server in servers.values():
                server.start()
            valid = WorkloadSpec("validate", token=self._token)
            valid_h2 = H2Target(_VALIDATE_PATH, auth_pb2.ValidateRequest(access_token=self._token))
            off, on = names.VALIDATE_METRICS_OFF, names.VALIDATE_METRICS_ON
            for name in [off, on, on, off] * self.opts.metrics_rounds:
                run = self._runner(servers[name].target, 1, work)
                probes = self._probes(servers[name].target)["valid"]
                runs[name].append(run.constant(name, valid_h2, valid, probes))
            counted = metrics_sample(
                metrics_listen, "authsvc_validations_total", {"reason": "valid"}
            )
        finally:
            for server in servers.values():
                server.stop()
        for name, results in runs.items():
            self.res.runs.append(combined(name, results))
        served = sum(r.requests for r in runs[on])
        self.res.runs[-1].notes.append(
            f"/metrics counted {counted:,.0f} valid Validate answers ({served:,} in the "
            "measured windows; warm-ups and checked samples are the rest)"
        )
        self.say(f"  metrics on/off: {summary(self.res.runs[-1])} vs {summary(self.res.runs[-2])}")
        self.res.metrics_direct_us = metrics_cost.direct_us(self.opts.micro_seconds)
        self.say(f"  metrics timed directly: {self.res.metrics_direct_us:.1f} us per Validate")

    def _scaling(self, env: dict[str, str], work: Path) -> None:
        n = self.opts.scale_workers
        self.say(f"restarting authsvc with --workers {n} ...")
        server = ServerProcess(env, n, work / f"server-w{n}.log")
        server.start()
        try:
            run = self._runner(server.target, n, work)
            probes = self._probes(server.target)
            valid_h2 = H2Target(_VALIDATE_PATH, auth_pb2.ValidateRequest(access_token=self._token))
            self.res.runs.append(
                run.constant(names.HEALTH, _HEALTH, WorkloadSpec("health"), probes["health"])
            )
            self.res.runs.append(
                run.constant(
                    names.VALIDATE_VALID,
                    valid_h2,
                    WorkloadSpec("validate", token=self._token),
                    probes["valid"],
                )
            )
        finally:
            server.stop()

    def _meta(self) -> None:
        try:
            commit = subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
                cwd=Path(__file__).resolve().parent,
            ).stdout.strip()
        except OSError:
            commit = ""
        o = self.opts
        self.res.meta = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "grpcio": grpc.__version__,
            "commit": commit,
            "mode": "quick" if o.quick else "full",
            "duration": o.duration,
            "warmup": o.warmup,
            "concurrency": o.concurrency,
            "h2load_connections": o.h2_clients,
            "python_generator_processes": o.py_processes,
            "login_concurrency": o.login_concurrency,
            "flood_concurrency": o.flood_concurrency,
            "scale_workers": o.scale_workers,
            "rss_calls": o.rss_calls,
            "session_logins": o.session_logins,
            "mix": dict(MIX),
        }
