"""Refresh margins and backoff: pure functions."""

from __future__ import annotations

import pytest
from authsvc_client.policy import DEFAULT_POLICY, RefreshPolicy, backoff_delay, refresh_margin


@pytest.mark.parametrize(
    ("lifetime", "margin"),
    [
        (900.0, 90.0),  # 10% of the lifetime beats 30 s
        (120.0, 30.0),  # 30 s beats 10%
        (40.0, 20.0),  # never more than half the lifetime
        (3.0, 1.5),  # a 3 s token is used for 1.5 s, not refreshed on every call
    ],
)
def test_margin_is_larger_of_30s_and_10_percent_capped_at_half(
    lifetime: float, margin: float
) -> None:
    assert refresh_margin(lifetime, DEFAULT_POLICY, jitter=0.0) == pytest.approx(margin)


def test_jitter_only_shrinks_the_margin_by_up_to_its_fraction() -> None:
    low = refresh_margin(900.0, DEFAULT_POLICY, jitter=0.999)
    assert 90.0 * 0.9 <= low < 90.0
    assert refresh_margin(3.0, DEFAULT_POLICY, jitter=0.999) <= 1.5


def test_backoff_doubles_with_jitter_and_is_capped() -> None:
    policy = RefreshPolicy(backoff_initial=1.0, backoff_max=8.0)
    assert backoff_delay(1, policy, jitter=1.0) == 1.0
    assert backoff_delay(2, policy, jitter=1.0) == 2.0
    assert backoff_delay(3, policy, jitter=0.0) == 2.0  # equal jitter: half to all of 4 s
    assert backoff_delay(10, policy, jitter=1.0) == 8.0
