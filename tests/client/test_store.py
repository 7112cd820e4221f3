"""FileTokenStore: mode 0600, atomic replacement, several processes at once, aging."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from authsvc_client import FileTokenStore, Tokens, TokenStoreError

PAIR = Tokens("at-1", "rt-1", expires_in=600, refresh_expires_in=3600, scopes=("read",),
              session_id="s1")  # fmt: skip


def test_round_trip_and_mode_0600(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "dir" / "tokens.json", wall_clock=lambda: 1000.0)
    assert store.load() is None
    old = os.umask(0)  # even with the most permissive umask
    try:
        store.save(PAIR)
    finally:
        os.umask(old)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    loaded = store.load()
    assert loaded == Tokens("at-1", "rt-1", 600.0, 3600.0, 600.0, ("read",), "s1")
    names = sorted(p.name for p in store.path.parent.iterdir())
    assert names == ["tokens.json", "tokens.json.lock"]  # no temporary files left behind


def test_a_path_under_the_home_directory_may_start_with_a_tilde() -> None:
    store = FileTokenStore("~/.config/mytool/session.json")
    assert store.path == Path.home() / ".config" / "mytool" / "session.json"


def test_lifetimes_age_by_wall_time_and_never_grow(tmp_path: Path) -> None:
    now = [1000.0]
    store = FileTokenStore(tmp_path / "t.json", wall_clock=lambda: now[0])
    store.save(PAIR)
    now[0] = 1100.0
    loaded = store.load()
    assert loaded is not None
    assert loaded.expires_in == 500.0 and loaded.refresh_expires_in == 3500.0
    assert loaded.full_lifetime == 600.0  # the margin is still computed from the whole life
    now[0] = 500.0  # the wall clock went backwards: no time passed, nothing gained
    loaded = store.load()
    assert loaded is not None and loaded.expires_in == 600.0
    now[0] = 99999.0
    loaded = store.load()
    assert loaded is not None and loaded.expires_in == 0.0


def test_refuses_a_file_other_users_can_read(tmp_path: Path) -> None:
    store = FileTokenStore(tmp_path / "t.json")
    store.save(PAIR)
    store.path.chmod(0o644)
    with pytest.raises(TokenStoreError, match="accessible by other users"):
        store.load()


def test_refuses_a_symlink(tmp_path: Path) -> None:
    real = FileTokenStore(tmp_path / "real.json")
    real.save(PAIR)
    (tmp_path / "link.json").symlink_to(tmp_path / "real.json")
    with pytest.raises(TokenStoreError):
        FileTokenStore(tmp_path / "link.json").load()


@pytest.mark.parametrize("content", [b"", b"{", b"[]", b'{"version": 99}', b'{"version": 1}'])
def test_corrupt_files_raise_store_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "t.json"
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(TokenStoreError):
        FileTokenStore(path).load()


WRITER = """
import sys
from authsvc_client import FileTokenStore, Tokens
store = FileTokenStore(sys.argv[1])
name = sys.argv[2]
for i in range(200):
    # A long token makes a torn write visible if the replacement were not atomic.
    store.save(Tokens(f"at-{name}-{i}-" + "x" * 20000, f"rt-{name}-{i}", expires_in=60))
"""


def test_concurrent_processes_never_see_a_torn_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.json"
    store = FileTokenStore(path)
    store.save(PAIR)
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(n)]) for n in range(4)
    ]
    reads = 0
    while any(w.poll() is None for w in writers) or reads < 50:
        tokens = store.load()  # raises TokenStoreError on a half-written file
        assert tokens is not None
        if tokens.access_token != "at-1":
            name, i = tokens.access_token.split("-")[1:3]
            assert tokens.refresh_token == f"rt-{name}-{i}"  # a consistent pair
        reads += 1
    assert all(w.wait(timeout=60) == 0 for w in writers)
    final = store.load()
    assert final is not None and final.refresh_token.endswith("-199")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared.json", "shared.json.lock"]


def test_refuses_a_directory_others_can_write(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(TokenStoreError, match="private directory"):
        FileTokenStore(shared / "tokens.json").load()


def test_a_stuck_lock_holder_makes_a_clear_error_not_a_hang(tmp_path: Path) -> None:
    import fcntl

    store = FileTokenStore(tmp_path / "tokens.json", lock_timeout=0.2)
    store.save(Tokens("at1", "rt1", expires_in=60))
    with open(tmp_path / "tokens.json.lock", "a") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another process stuck while holding it
        with pytest.raises(TokenStoreError, match="stayed locked"):
            store.save(Tokens("at2", "rt2", expires_in=60))
    store.save(Tokens("at2", "rt2", expires_in=60))
    loaded = store.load()
    assert loaded is not None and loaded.refresh_token == "rt2"


SAVE = """
import sys
from authsvc_client import FileTokenStore, Tokens
FileTokenStore(sys.argv[1], lock_timeout=0.2).save(Tokens("at-other", "rt-other", expires_in=60))
"""


def test_a_held_store_keeps_other_processes_out_until_released(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    store = FileTokenStore(path)

    def other_process_saves() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", SAVE, str(path)], capture_output=True, text=True, timeout=60
        )

    with store.lock() as held:
        assert held.load() is None
        held.save(PAIR)  # no second lock taken: that would wait for this one
        refused = other_process_saves()
        assert refused.returncode != 0 and "stayed locked" in refused.stderr
        stored = held.load()
        assert stored is not None and stored.refresh_token == "rt-1"
    assert other_process_saves().returncode == 0
    loaded = store.load()
    assert loaded is not None and loaded.refresh_token == "rt-other"
    held.release()  # again: nothing happens
    with pytest.raises(TokenStoreError, match="released"):
        held.load()
