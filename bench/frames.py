"""gRPC's wire framing of unary messages, for a load generator that only speaks HTTP/2."""

from __future__ import annotations

import struct

from google.protobuf.message import Message

#: A gRPC message on the wire: 1 flag byte (0: not compressed), 4-byte big-endian length.
PREFIX_BYTES = 5


def frame(message: Message) -> bytes:
    """`message` as the body of a unary gRPC request (length-prefixed, uncompressed)."""
    body = message.SerializeToString()
    return b"\x00" + struct.pack(">I", len(body)) + body


def framed_size(message: Message) -> int:
    """Bytes of DATA a server sends for `message` as a unary response."""
    return PREFIX_BYTES + message.ByteSize()
