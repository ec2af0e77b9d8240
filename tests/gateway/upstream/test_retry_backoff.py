"""Retry backoff: exponential with full jitter, capped at ten times the base (Envoy)."""

from __future__ import annotations

import pytest

from gateway.proxy.exchange import backoff_delay


@pytest.mark.parametrize(
    ("retry", "ceiling"),
    [(1, 0.1), (2, 0.3), (3, 0.7), (4, 1.0), (10, 1.0)],
)
def test_ceiling_grows_exponentially_then_caps(retry: int, ceiling: float) -> None:
    assert backoff_delay(0.1, retry, 0.0) == 0.0
    assert backoff_delay(0.1, retry, 0.999999) == pytest.approx(ceiling, rel=1e-5)


def test_full_jitter_spreads_over_the_whole_range() -> None:
    delays = [backoff_delay(0.2, 2, i / 10) for i in range(10)]
    assert delays == sorted(delays)
    assert delays[0] == 0.0 and delays[5] == pytest.approx(0.3)
