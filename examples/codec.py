"""JSON messages for the example services, so they need no generated code."""

from __future__ import annotations

import json
from typing import Any


def encode(message: dict[str, Any]) -> bytes:
    """Serialise a message."""
    return json.dumps(message).encode()


def decode(data: bytes) -> dict[str, Any]:
    """Deserialise a message."""
    value = json.loads(data)
    if not isinstance(value, dict):
        raise ValueError("a message must be a JSON object")
    return value


CODEC: dict[str, Any] = {"request_deserializer": decode, "response_serializer": encode}
STUB_CODEC: dict[str, Any] = {"request_serializer": encode, "response_deserializer": decode}
