"""A helper process for test_store_e2e.py: one program sharing a token file with others.

    python -m tests.client.store_worker PATH AUTHSVC_TARGET SECONDS [--asyncio]

It builds a token manager on `FileTokenStore(PATH)` (no credentials: the session must be
shared, not replaced), prints "ready", waits for a line on stdin, then asks for an access
token every 20 ms for SECONDS and prints a JSON summary: how many tokens it saw, how many
pairs it obtained itself, and the first error, if any.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import grpc
import grpc.aio
from authsvc_client import (
    AsyncAuthsvcClient,
    AsyncTokenManager,
    AuthClientError,
    AuthsvcClient,
    FileTokenStore,
    RefreshPolicy,
    TokenManager,
    Tokens,
)

CADENCE = 0.02
# A 1 s token becomes due 0.1 s after it is issued: many rotations in a few seconds. No
# jitter, so processes holding the same pair all find it due at the same moment.
POLICY = RefreshPolicy(max_margin_fraction=0.9, margin_fraction=0.9, jitter_fraction=0.0)


def _summary(seen: set[str], obtained: list[Tokens], error: AuthClientError | None) -> str:
    return json.dumps(
        {
            "tokens_seen": len(seen),
            "pairs_obtained": len(obtained),
            "error": None if error is None else f"{type(error).__name__}: {error}",
        }
    )


def _start() -> None:
    print("ready", flush=True)
    sys.stdin.readline()


def run_blocking(path: str, target: str, seconds: float) -> str:
    obtained: list[Tokens] = []
    seen: set[str] = set()
    error: AuthClientError | None = None
    with grpc.insecure_channel(target) as channel:
        manager = TokenManager(
            AuthsvcClient(channel),
            store=FileTokenStore(path),
            listeners=[obtained.append],
            policy=POLICY,
        )
        _start()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                seen.add(manager.access_token())
            except AuthClientError as exc:
                error = exc
                break
            time.sleep(CADENCE)  # the pace of the workload, not a synchronisation
    return _summary(seen, obtained, error)


async def run_asyncio(path: str, target: str, seconds: float) -> str:
    obtained: list[Tokens] = []
    seen: set[str] = set()
    error: AuthClientError | None = None
    async with grpc.aio.insecure_channel(target) as channel:
        manager = AsyncTokenManager(
            AsyncAuthsvcClient(channel),
            store=FileTokenStore(path),
            listeners=[obtained.append],
            policy=POLICY,
        )
        await asyncio.to_thread(_start)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                seen.add(await manager.access_token())
            except AuthClientError as exc:
                error = exc
                break
            await asyncio.sleep(CADENCE)  # the pace of the workload
    return _summary(seen, obtained, error)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path")
    parser.add_argument("target")
    parser.add_argument("seconds", type=float)
    parser.add_argument("--asyncio", action="store_true")
    args = parser.parse_args(argv)
    if args.asyncio:
        summary = asyncio.run(run_asyncio(args.path, args.target, args.seconds))
    else:
        summary = run_blocking(args.path, args.target, args.seconds)
    print(summary, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
