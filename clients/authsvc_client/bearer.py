"""The `authorization: Bearer <token>` metadata entry, written by clients, read by servers."""

from __future__ import annotations

from collections.abc import Iterable

AUTHORIZATION = "authorization"
_SCHEME = "bearer"

MetadataPairs = Iterable[tuple[str, "str | bytes"]]


def with_bearer(metadata: MetadataPairs | None, token: str) -> list[tuple[str, str | bytes]]:
    """`metadata` with any authorization entry replaced by a bearer entry for `token`."""
    kept = [(key, value) for key, value in metadata or () if key.lower() != AUTHORIZATION]
    kept.append((AUTHORIZATION, f"Bearer {token}"))
    return kept


def bearer_token(metadata: MetadataPairs | None) -> str | None:
    """The token of the single bearer authorization entry, or None if there is not exactly one."""
    values = [value for key, value in metadata or () if key.lower() == AUTHORIZATION]
    if len(values) != 1 or not isinstance(values[0], str):
        return None
    scheme, _, token = values[0].partition(" ")
    token = token.strip()
    if scheme.lower() != _SCHEME or not token or " " in token:
        return None
    return token
