"""How both server interceptors report a refused call (their shared, I/O-free part).

The interceptors themselves run end to end in test_server_interceptor_e2e.py.
"""

from __future__ import annotations

import logging

import grpc
import pytest
from authsvc_client import InsufficientScope, InvalidToken, VerifierUnavailable
from authsvc_client.errors import TokenVerificationError
from authsvc_client.server_base import UNVERIFIABLE, refusal

METHOD = "/test.Echo/Unary"


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidToken("the token has expired", "EXPIRED"), grpc.StatusCode.UNAUTHENTICATED),
        (InsufficientScope("lacks write"), grpc.StatusCode.PERMISSION_DENIED),
        (VerifierUnavailable("no keys"), grpc.StatusCode.UNAVAILABLE),
    ],
)
def test_a_refused_token_is_reported_with_its_status_and_message(
    error: TokenVerificationError, code: grpc.StatusCode
) -> None:
    assert refusal(METHOD, error) == (code, str(error))


def test_a_bug_is_reported_as_unverifiable_and_logged_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bug = KeyError("eyJhbGciOiJFZERTQSJ9.secret-token")
    with caplog.at_level(logging.ERROR, logger="authsvc_client"):
        assert refusal(METHOD, bug) == (grpc.StatusCode.UNAUTHENTICATED, UNVERIFIABLE)
    assert [record.getMessage() for record in caplog.records] == [
        f"token verification failed unexpectedly on {METHOD}"
    ]
    assert "secret-token" not in caplog.text
