"""End-to-end demo: orders calls inventory with a service account's refreshing token.

    python -m examples.demo        (or `make demo`)

It starts `authsvc serve` (3-second access tokens, embedded Redis, a temporary data dir),
creates the service account `orders-svc` with `authsvc client add`, starts the inventory
service (protected by the server interceptor) and the orders service (calling it through the
client interceptor), then shows:

1. a call succeeding;
2. a call succeeding after the access token has expired (the manager refreshed it first);
3. a call failing with UNAUTHENTICATED after the caller's session is revoked.

For step 3 the orders service holds only the session from a bootstrap login, not the
secret: a manager that keeps credentials would simply log in again.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from authsvc_client import Credentials, Tokens

from authsvc.redis_process import free_port
from examples import inventory, orders
from examples.codec import STUB_CODEC

ACCESS_TTL_SECONDS = 3
AUTHSVC = Path(sys.executable).with_name("authsvc")


def _say(message: str) -> None:
    print(f"demo: {message}", flush=True)


@contextmanager
def _authsvc(env: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [str(AUTHSVC), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        for line in process.stdout:
            if "listening on" in line:
                _say(f"authsvc: {line.strip()}")
                break
        else:
            raise RuntimeError(f"authsvc exited with {process.wait()}")
        yield process
    finally:
        process.terminate()
        process.wait(timeout=30)


def _run(env: dict[str, str], *args: str, stdin: str = "") -> str:
    return subprocess.run(
        [str(AUTHSVC), *args], env=env, input=stdin, capture_output=True, text=True, check=True
    ).stdout


def _place_order(target: str, item: str) -> None:
    with grpc.insecure_channel(target) as channel:
        place = channel.unary_unary(orders.PLACE_ORDER, **STUB_CODEC)
        try:
            answer: dict[str, Any] = place({"item": item, "count": 2}, timeout=15)
            _say(f"  PlaceOrder({item}) -> {answer}")
        except grpc.RpcError as exc:
            _say(f"  PlaceOrder({item}) failed: {exc.code().name}: {exc.details()}")


def main() -> None:
    """Run the demo and clean up after it."""
    argparse.ArgumentParser(description=__doc__).parse_args()
    with tempfile.TemporaryDirectory(prefix="authsvc-demo-") as data_dir:
        authsvc_target = f"127.0.0.1:{free_port()}"
        env = {
            **os.environ,
            "AUTHSVC_LISTEN": authsvc_target,
            "AUTHSVC_DATA_DIR": data_dir,
            "AUTHSVC_ACCESS_TTL_SECONDS": str(ACCESS_TTL_SECONDS),
            "AUTHSVC_AUDIENCES": inventory.AUDIENCE,
            "AUTHSVC_LOG_LEVEL": "WARNING",
        }
        env.pop("AUTHSVC_REDIS_URL", None)  # embedded Redis in the temporary data dir
        with _authsvc(env):
            out = _run(env, "client", "add", "orders-svc", "--scopes", inventory.SCOPE)
            secret = out.strip().splitlines()[-1]
            _say("created service account orders-svc (scope inventory.read)")

            inventory_port, orders_port = free_port(), free_port()
            callee = inventory.serve(inventory_port, authsvc_target)
            bootstrap = orders.token_manager(
                authsvc_target, credentials=Credentials.service_account("orders-svc", secret)
            )
            bootstrap.access_token()
            session = bootstrap.tokens
            assert session is not None
            manager = orders.token_manager(authsvc_target, tokens=session)
            manager.add_listener(
                lambda t: _say(f"  (token manager: new access token, valid {t.expires_in:.0f} s)")
            )
            caller = orders.serve(
                orders_port, orders.Orders(f"127.0.0.1:{inventory_port}", manager)
            )
            orders_target = f"127.0.0.1:{orders_port}"
            try:
                _say("1. a call with a fresh token")
                _place_order(orders_target, "apple")
                _say(f"   waiting {ACCESS_TTL_SECONDS + 1} s for the access token to expire")
                time.sleep(ACCESS_TTL_SECONDS + 1)
                _say("2. the same call after expiry: refreshed before the call")
                _place_order(orders_target, "pear")
                _say("3. revoking the caller's session (authsvc revoke --what session)")
                current: Tokens | None = manager.tokens
                assert current is not None
                _run(env, "revoke", "-", "--what", "session", stdin=current.refresh_token)
                _place_order(orders_target, "apple")
            finally:
                caller.stop(grace=None)
                callee.stop(grace=None)
    _say("done")


if __name__ == "__main__":
    main()
