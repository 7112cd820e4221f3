"""The processes under test: a private redis-server and `authsvc serve`, plus the admin CLI.

Everything is started as a real subprocess on a free port, exactly as an operator would run
it, so the server's CPU and memory can be watched from outside.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client.parser import text_string_to_metric_families

from authsvc.errors import ConfigError
from authsvc.redis_process import RedisProcess


class BenchSetupError(RuntimeError):
    """Raised when Redis, the server or the admin CLI cannot be started or used."""


def authsvc_binary() -> str:
    """The `authsvc` console script of this interpreter's environment."""
    beside = Path(sys.executable).parent / "authsvc"
    if beside.exists():
        return str(beside)
    found = shutil.which("authsvc")
    if found is None:
        raise BenchSetupError("the authsvc command is not installed (run `make` first)")
    return found


class RedisServer:
    """A private, non-persistent redis-server on a free port (the project's one launcher)."""

    def __init__(self, workdir: Path) -> None:
        self._process = RedisProcess(workdir, appendonly=False)
        self.port = self._process.port

    @property
    def url(self) -> str:
        """The `redis://` URL of database 0."""
        return self._process.url

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until it answers PING."""
        try:
            self._process.start(timeout)
        except ConfigError as exc:
            raise BenchSetupError(str(exc)) from exc

    def client(self) -> redis.Redis:
        """A synchronous client (decoded strings)."""
        return redis.Redis(port=self.port, decode_responses=True)

    def stop(self) -> None:
        """Stop Redis and wait for it."""
        self._process.stop()


class ServerProcess:
    """`authsvc serve [--workers N]` as a subprocess with its own environment."""

    def __init__(self, env: dict[str, str], workers: int, log_path: Path) -> None:
        self.env = env
        self.workers = workers
        self.target = env["AUTHSVC_LISTEN"]
        self._log_path = log_path
        self._log: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The pid of the main server process."""
        if self._proc is None:
            raise BenchSetupError("server not started")
        return self._proc.pid

    def start(self, timeout: float = 30.0) -> None:
        """Start and wait until the health service says SERVING on every worker's port."""
        self._log = self._log_path.open("ab")
        self._proc = subprocess.Popen(
            [authsvc_binary(), "serve", "--workers", str(self.workers)],
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while not self._serving():
            if self._proc.poll() is not None:
                raise BenchSetupError(f"authsvc serve exited; see {self._log_path}")
            if time.monotonic() > deadline:
                raise BenchSetupError(f"authsvc serve did not become SERVING; see {self._log_path}")
            time.sleep(0.1)
        # With --workers N each worker binds on its own; wait until all of them are up.
        while len(self.pids()) < self.workers + (1 if self.workers > 1 else 0):
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)
        time.sleep(2.0 if self.workers > 1 else 0.0)

    def _serving(self) -> bool:
        try:
            with grpc.insecure_channel(self.target) as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=1.0)
                return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
        except grpc.RpcError:
            return False

    def pids(self) -> list[int]:
        """The main process and all its descendants (the workers)."""
        if self._proc is None:
            return []
        found = [self._proc.pid]
        for pid in found:
            found.extend(_children(pid))
        return found

    def worker_pids(self) -> list[int]:
        """The processes that serve calls: the main one, or the spawned workers."""
        pids = self.pids()
        return pids[:1] if self.workers == 1 else [p for p in pids[1:] if _is_worker(p)]

    def rss_kib(self) -> int:
        """Resident memory of the serving processes, summed, in KiB."""
        return sum(rss_kib(pid) for pid in self.worker_pids())

    def stop(self) -> None:
        """SIGTERM (graceful stop) and wait."""
        if self._proc is not None:
            self._proc.send_signal(signal.SIGTERM)
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None


def _children(pid: int) -> list[int]:
    try:
        tasks = Path(f"/proc/{pid}/task").iterdir()
        kids: list[int] = []
        for task in tasks:
            text = (task / "children").read_text()
            kids.extend(int(p) for p in text.split())
        return kids
    except OSError:
        return []


def _is_worker(pid: int) -> bool:
    """True for a multiprocessing worker, false for helpers such as the resource tracker."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"resource_tracker" not in cmdline


def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return 0
    return 0


def metrics_sample(listen: str, name: str, labels: dict[str, str]) -> float:
    """One sample of a server's `/metrics` (0 when absent)."""
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return float(sample.value)
    return 0.0


def server_env(redis_url: str, data_dir: Path, listen: str) -> dict[str, str]:
    """The process environment for the server and the admin CLI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHSVC_")}
    env.update(
        AUTHSVC_REDIS_URL=redis_url,
        AUTHSVC_DATA_DIR=str(data_dir),
        AUTHSVC_LISTEN=listen,
        AUTHSVC_GRACE_SHUTDOWN_SECONDS="1",
    )
    return env


def _cli(env: dict[str, str], args: list[str], stdin: str = "") -> str:
    proc = subprocess.run(
        [authsvc_binary(), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchSetupError(f"authsvc {' '.join(args[:2])} failed: {proc.stderr.strip()}")
    return proc.stdout


def add_user(env: dict[str, str], name: str, password: str, scopes: str) -> None:
    """`authsvc user add NAME --scopes S --password-stdin`."""
    _cli(env, ["user", "add", name, "--scopes", scopes, "--password-stdin"], f"{password}\n" * 2)


def add_client(env: dict[str, str], name: str, scopes: str) -> str:
    """`authsvc client add NAME --scopes S`; returns the secret (its last output line)."""
    return _cli(env, ["client", "add", name, "--scopes", scopes]).strip().splitlines()[-1]
