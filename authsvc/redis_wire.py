"""Raw RESP requests on short-lived connections, and asking Sentinel for the master.

Used where redis-py's clients do not fit: the revocation view's feeds and topology checks,
and finding the master for the Sentinel form (redis-py's own Sentinel client retries by
default and, under failover, left connections to the sentinels open for the garbage
collector to find).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from typing import Any

import hiredis


class ErrorReply(Exception):
    """Raised when Redis answers a request with an error reply."""


def command(*parts: str | bytes) -> bytes:
    """Encode one Redis command in RESP (what every client sends)."""
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


async def request(
    host: str,
    port: int,
    commands: Sequence[Sequence[str]],
    timeout: float,
    tls: ssl.SSLContext | None = None,
) -> list[Any]:
    """Send `commands` on a new connection and return their replies (bytes, lists).

    Raises:
        OSError, TimeoutError: not reachable, or no complete answer within `timeout`.
        ErrorReply: Redis answered one of them with an error.
    """
    writer: asyncio.StreamWriter | None = None
    try:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can drop a connection that
        # completes as it times out, leaving it open.
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, ssl=tls)
            writer.write(b"".join(command(*c) for c in commands))
            parser, replies = hiredis.Reader(), list[Any]()
            while len(replies) < len(commands):
                data = await reader.read(65536)
                if not data:
                    raise OSError("connection closed")
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    if isinstance(reply, Exception):
                        raise ErrorReply(str(reply))
                    replies.append(reply)
            return replies
    finally:
        if writer is not None:
            writer.close()


async def sentinel_master(
    sentinels: Sequence[tuple[str, int]],
    name: str,
    timeout: float,
    tls: ssl.SSLContext | None = None,
) -> tuple[str, int]:
    """The address of master `name` as the first sentinel that knows it says.

    Raises:
        OSError: no sentinel answered with an address.
    """
    for host, port in sentinels:
        with contextlib.suppress(OSError, TimeoutError, ErrorReply):
            (reply,) = await request(
                host, port, [("SENTINEL", "GET-MASTER-ADDR-BY-NAME", name)], timeout, tls
            )
            if reply:
                return reply[0].decode(), int(reply[1])
    raise OSError(f"no sentinel names a master {name!r}")
