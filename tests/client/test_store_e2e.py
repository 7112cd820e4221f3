"""FileTokenStore shared by real processes against the real authsvc, with no grace window."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import grpc
import pytest
from authsvc_api.v1 import auth_pb2
from authsvc_client import AuthsvcClient, Credentials, FileTokenStore, TokenManager

from tests.harness import HarnessFactory

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
SECONDS = 3.0


def start_worker(path: Path, target: str, *, aio: bool) -> subprocess.Popen[str]:
    """A store_worker process; it says "ready" once it has built its manager."""
    args = [sys.executable, "-m", "tests.client.store_worker", str(path), target, str(SECONDS)]
    return subprocess.Popen(
        [*args, *(["--asyncio"] if aio else [])],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("aio", [False, True], ids=["blocking", "asyncio"])
def test_processes_sharing_a_store_never_present_a_refresh_token_twice(
    authsvc_server_factory: HarnessFactory, tmp_path: Path, aio: bool
) -> None:
    # Grace 0: any second presentation of a refresh token ends the session at once.
    auth = authsvc_server_factory(access_ttl_seconds=1, refresh_grace_seconds=0)
    creds = Credentials.service_account("svc-shared", auth.create_client("svc-shared"))
    path = tmp_path / "session" / "tokens.json"
    with grpc.insecure_channel(auth.target) as channel:
        first = TokenManager(AuthsvcClient(channel), credentials=creds, store=FileTokenStore(path))
        first.access_token()  # logs in and writes the store
    workers = [start_worker(path, auth.target, aio=aio) for _ in range(WORKERS)]
    summaries: list[dict[str, Any]] = []
    try:
        for worker in workers:
            assert worker.stdout is not None and worker.stdout.readline().strip() == "ready"
        for worker in workers:  # all at once, so their refreshes come due together
            assert worker.stdin is not None
            worker.stdin.write("go\n")
            worker.stdin.flush()
        for worker in workers:
            out, _ = worker.communicate(timeout=SECONDS + 30)
            assert worker.returncode == 0
            summaries.append(json.loads(out))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait(timeout=10)
    assert [s["error"] for s in summaries] == [None] * WORKERS, summaries
    refreshes = auth.rpc_counts["Refresh"]
    assert refreshes >= 10, summaries  # many rotations, each a chance to collide
    assert sum(s["pairs_obtained"] for s in summaries) == refreshes
    assert auth.rpc_counts["Login"] == 1
    stored = FileTokenStore(path).load()
    assert stored is not None
    # The session is alive: its newest refresh token still rotates.
    auth.stub.Refresh(auth_pb2.RefreshRequest(refresh_token=stored.refresh_token), timeout=10)
