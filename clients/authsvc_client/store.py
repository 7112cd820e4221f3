"""`FileTokenStore`: a token pair kept in a small JSON file, shared safely between processes.

The file is written with mode 0600 into a temporary file next to it and renamed over it, so
a reader sees either the old or the new pair, never half of one. Readers and writers also
take an `fcntl` lock on a sibling `.lock` file; a token manager holds it exclusively with
`lock()` from the read that decides whether to refresh until the new pair is written, so
processes sharing the file never present the same refresh token twice.

Lifetimes cannot be stored as monotonic readings (they mean nothing in another process), so
the file records how many seconds were left and the wall time of the save. On load the
elapsed wall time is subtracted; a wall clock that went backwards counts as no time passed,
and a token that turns out to be expired anyway is refused by the server and refreshed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from authsvc_client.errors import TokenStoreError
from authsvc_client.tokens import Tokens

_FORMAT_VERSION = 1
_FILE_MODE = 0o600
_LOCK_TIMEOUT = 10.0
_DIR_MODE = 0o700


class FileTokenStore:
    """Tokens in a JSON file; pass it as `store=` to a token manager.

    Args:
        path: The token file (`~` is expanded); its directory is created (mode 0700) if
            missing. The directory must belong to you and not be writable by group or others
            (`/tmp` is refused).
        wall_clock: Seconds since the epoch, used only to age the stored lifetimes.
        lock_timeout: Seconds to wait for the lock another process holds before giving up
            with `TokenStoreError`, so a stuck holder is an error, not a hang.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        wall_clock: Callable[[], float] = time.time,
        lock_timeout: float = _LOCK_TIMEOUT,
    ) -> None:
        self._path = Path(path).expanduser()
        self._lock_path = self._path.with_name(self._path.name + ".lock")
        self._wall_clock = wall_clock
        self._lock_timeout = lock_timeout

    @property
    def path(self) -> Path:
        """Where the tokens are kept."""
        return self._path

    def load(self) -> Tokens | None:
        """The stored pair, aged by the wall time since it was saved; None if there is none.

        Raises:
            TokenStoreError: The file is unreadable, corrupt, or readable by other users.
        """
        with self._locked(fcntl.LOCK_SH):
            return self._read()

    def save(self, tokens: Tokens) -> None:
        """Atomically replace the stored pair with `tokens` (mode 0600).

        Raises:
            TokenStoreError: The file cannot be written.
        """
        with self._locked(fcntl.LOCK_EX):
            self._write(tokens)

    def lock(self) -> HeldFileTokenStore:
        """Hold the store exclusively (other processes' `load`, `save` and `lock` wait).

        Use as `with store.lock() as held:`, reading and writing through `held`, or call
        `release()` on the result.

        Raises:
            TokenStoreError: The lock stayed held elsewhere for `lock_timeout` seconds, or
                the directory or lock file is not private to this user.
        """
        return HeldFileTokenStore(self, self._take_lock(fcntl.LOCK_EX))

    def clear(self) -> None:
        """Remove the stored pair (e.g. on logout)."""
        with self._locked(fcntl.LOCK_EX):
            with contextlib.suppress(FileNotFoundError):
                self._path.unlink()

    def _read(self) -> Tokens | None:
        try:
            fd = os.open(self._path, os.O_RDONLY | os.O_NOFOLLOW)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TokenStoreError(f"cannot open token file {self._path}: {exc}") from exc
        with os.fdopen(fd, "rb") as file:
            mode = os.fstat(file.fileno()).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise TokenStoreError(
                    f"token file {self._path} is accessible by other users "
                    f"(mode {stat.S_IMODE(mode):o}); expected {_FILE_MODE:o}"
                )
            raw = file.read()
        return _decode(raw, self._wall_clock(), self._path)

    def _write(self, tokens: Tokens) -> None:
        try:
            self._replace(_encode(tokens, self._wall_clock()))
        except OSError as exc:
            raise TokenStoreError(f"cannot write token file {self._path}: {exc}") from exc

    def _replace(self, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=self._path.parent, prefix=f".{self._path.name}.")
        try:
            os.fchmod(fd, _FILE_MODE)
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(tmp, self._path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(self._path.parent)

    @contextlib.contextmanager
    def _locked(self, operation: int) -> Iterator[None]:
        fd = self._take_lock(operation)
        try:
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def _take_lock(self, operation: int) -> int:
        """A descriptor of the lock file, locked with `operation`; close it to unlock."""
        try:
            self._path.parent.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
            directory = os.stat(self._path.parent)
            fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, _FILE_MODE)
        except OSError as exc:
            raise TokenStoreError(f"cannot open lock file {self._lock_path}: {exc}") from exc
        try:
            # Another user who can write the directory could swap the files or hold the
            # lock forever: the store lives in a directory only its owner may change.
            if directory.st_uid != os.geteuid() or directory.st_mode & 0o022:
                raise TokenStoreError(
                    f"{self._path.parent} is writable by others or not yours; "
                    "keep the token store in a private directory"
                )
            if os.fstat(fd).st_uid != os.geteuid():
                raise TokenStoreError(f"lock file {self._lock_path} belongs to another user")
            _flock_within(fd, operation, self._lock_timeout)
        except BaseException:
            os.close(fd)
            raise
        return fd


class HeldFileTokenStore:
    """A `FileTokenStore` under its exclusive lock, from `FileTokenStore.lock()`.

    Reads and writes go to the same file without locking again. The lock is released by
    `release()` or at the end of a `with` block (and, as for any `flock`, when the process
    ends).
    """

    def __init__(self, store: FileTokenStore, fd: int) -> None:
        self._store = store
        self._fd: int | None = fd

    def load(self) -> Tokens | None:
        """The stored pair; see `FileTokenStore.load`."""
        self._check_held()
        return self._store._read()

    def save(self, tokens: Tokens) -> None:
        """Atomically replace the stored pair; see `FileTokenStore.save`."""
        self._check_held()
        self._store._write(tokens)

    def release(self) -> None:
        """Release the lock; calling it again does nothing."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing releases the lock

    def __enter__(self) -> HeldFileTokenStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def _check_held(self) -> None:
        if self._fd is None:
            raise TokenStoreError("the token store's lock was already released")


def _flock_within(fd: int, operation: int, timeout: float) -> None:
    """flock, giving up after `timeout` seconds (a stuck holder must not hang refreshes)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                message = f"the token store stayed locked for {timeout:.0f} s"
                raise TokenStoreError(message) from None
            time.sleep(0.01)  # another process holds the lock: there is nothing to wait on


def _encode(tokens: Tokens, now: float) -> bytes:
    record = {
        "version": _FORMAT_VERSION,
        "saved_at": now,
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
        "expires_in": tokens.expires_in,
        "refresh_expires_in": tokens.refresh_expires_in,
        "lifetime": tokens.full_lifetime,
        "scopes": list(tokens.scopes),
        "session_id": tokens.session_id,
    }
    return json.dumps(record, indent=2).encode() + b"\n"


def _decode(raw: bytes, now: float, path: Path) -> Tokens:
    try:
        record: dict[str, Any] = json.loads(raw)
        if record.get("version") != _FORMAT_VERSION:
            raise ValueError(f"unknown format version {record.get('version')!r}")
        elapsed = max(0.0, now - float(record["saved_at"]))
        refresh_expires_in = record.get("refresh_expires_in")
        return Tokens(
            access_token=str(record["access_token"]),
            refresh_token=str(record["refresh_token"]),
            expires_in=max(0.0, float(record["expires_in"]) - elapsed),
            refresh_expires_in=(
                None
                if refresh_expires_in is None
                else max(0.0, float(refresh_expires_in) - elapsed)
            ),
            lifetime=float(record["lifetime"]),
            scopes=tuple(str(scope) for scope in record.get("scopes", ())),
            session_id=str(record.get("session_id", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise TokenStoreError(f"token file {path} is corrupt: {exc}") from exc


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
