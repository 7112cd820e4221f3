"""The authorization metadata entry and the insecure-channel rule."""

from __future__ import annotations

import pytest
from authsvc_client import is_loopback_target
from authsvc_client.bearer import bearer_token, with_bearer


def test_with_bearer_replaces_any_existing_authorization() -> None:
    metadata = [("x-request-id", "1"), ("Authorization", "Basic abc")]
    assert with_bearer(metadata, "t0k") == [
        ("x-request-id", "1"), ("authorization", "Bearer t0k")
    ]  # fmt: skip
    assert with_bearer(None, "t") == [("authorization", "Bearer t")]


@pytest.mark.parametrize(
    ("metadata", "token"),
    [
        ([("authorization", "Bearer abc")], "abc"),
        ([("authorization", "bearer abc")], "abc"),
        ([], None),
        ([("authorization", "Bearer")], None),
        ([("authorization", "Bearer a b")], None),
        ([("authorization", "Basic abc")], None),
        ([("authorization", "Bearer a"), ("authorization", "Bearer b")], None),
        ([("authorization", b"Bearer abc")], None),
    ],
)
def test_bearer_token(metadata: list[tuple[str, str | bytes]], token: str | None) -> None:
    assert bearer_token(metadata) == token


@pytest.mark.parametrize(
    ("target", "local"),
    [
        ("127.0.0.1:50051", True),
        ("127.5.5.5:1", True),
        ("localhost:443", True),
        ("[::1]:8080", True),
        ("::1", True),
        ("ipv4:127.0.0.1:50051", True),
        ("dns:///localhost:50051", True),
        ("unix:/run/app.sock", True),
        ("10.0.0.5:50051", False),
        ("orders.internal:443", False),
        ("dns:///orders.internal:443", False),
        ("dns://8.8.8.8/localhost.evil.com:443", False),
        ("localhost.evil.com:443", False),
        ("ipv4:127.0.0.1:1,127.0.0.2:1", True),
        ("ipv6:[::1]:1,[2001:db8::1]:1", False),
        ("ipv4:127.0.0.1:1,10.0.0.5:1", False),
    ],
)
def test_loopback_targets(target: str, local: bool) -> None:
    assert is_loopback_target(target) is local
