"""OutlierDetector: DestinationRule ``outlierDetection`` with Envoy's semantics, on fake time.

Hosts are plain records with the four fields the detector keeps; ``now`` is passed in, so
ejection lengths and returns are checked to the second without waiting.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from gateway.config.snapshot import OutlierDetection
from gateway.upstream.outlier import MAX_EJECTION_TIME_S, OutlierDetector


@dataclass
class FakeHost:
    consecutive_5xx: int = 0
    consecutive_gateway: int = 0
    ejected_until: float = 0.0
    ejection_multiplier: int = 0


def detector(n: int = 1, **config: float) -> tuple[OutlierDetector, list[FakeHost]]:
    hosts = [FakeHost() for _ in range(n)]
    cfg = OutlierDetection(max_ejection_percent=100, **config)  # type: ignore[arg-type]
    return OutlierDetector(cfg, hosts), hosts


def feed(det: OutlierDetector, host: FakeHost, statuses: list[int]) -> list[bool]:
    return [det.report(host, status, 100.0) for status in statuses]


@pytest.mark.parametrize(
    ("consecutive_5xx", "statuses", "ejected_at"),
    [
        (3, [500, 500, 500], 2),
        (3, [503, 500, 502], 2),  # any 5xx counts
        (3, [0, 0, 0], 2),  # local failures (connect failure, reset, timeout) count too
        (3, [500, 0, 504], 2),
        (3, [500, 500, 200, 500, 500], None),  # a success resets the count
        (3, [500, 500, 404, 500, 500], None),  # so does any non-5xx answer
        (3, [500, 500, 200, 500, 500, 500], 5),
        (1, [200, 503], 1),
        (5, [500] * 4, None),
        (0, [500] * 20, None),  # 0 disables it
    ],
)
def test_consecutive_5xx_errors(
    consecutive_5xx: int, statuses: list[int], ejected_at: int | None
) -> None:
    det, (host,) = detector(consecutive_5xx_errors=consecutive_5xx)
    results = feed(det, host, statuses)
    expected = [i == ejected_at for i in range(len(statuses))]
    assert results == expected
    assert bool(host.ejected_until) is (ejected_at is not None)


@pytest.mark.parametrize(
    ("consecutive_gateway", "statuses", "ejected_at"),
    [
        (2, [502, 503], 1),
        (2, [504, 0], 1),  # a local failure is a gateway error
        (2, [502, 500, 502], None),  # a non-gateway 5xx resets the gateway count
        (2, [502, 200, 502], None),
        (2, [500, 500, 500, 500, 500, 500], None),  # 500 is never a gateway error
        (3, [503, 503, 503], 2),
        (0, [503] * 20, None),
    ],
)
def test_consecutive_gateway_errors(
    consecutive_gateway: int, statuses: list[int], ejected_at: int | None
) -> None:
    det, (host,) = detector(
        consecutive_5xx_errors=0, consecutive_gateway_errors=consecutive_gateway
    )
    results = feed(det, host, statuses)
    assert results == [i == ejected_at for i in range(len(statuses))]


def test_gateway_errors_trip_before_the_5xx_count() -> None:
    det, (host,) = detector(consecutive_5xx_errors=5, consecutive_gateway_errors=2)
    assert feed(det, host, [500, 503, 502]) == [False, False, True]


def test_an_ejected_host_is_not_ejected_again_and_keeps_its_return_time() -> None:
    det, (host, _, _) = detector(3, consecutive_5xx_errors=1, base_ejection_time_s=30.0)
    assert det.report(host, 500, 100.0)
    assert host.ejected_until == 130.0
    assert not det.report(host, 500, 110.0)
    assert host.ejected_until == 130.0
    assert host.ejection_multiplier == 1


@pytest.mark.parametrize(
    ("base", "durations"),
    [
        (30.0, [30.0, 60.0, 90.0, 120.0]),  # base x times ejected
        (100.0, [100.0, 200.0, 300.0, 300.0]),  # capped at 300 s
        (120.0, [120.0, 240.0, MAX_EJECTION_TIME_S]),
        (400.0, [400.0, 400.0]),  # a base above the cap is the cap (Envoy)
    ],
)
def test_ejection_time_grows_with_each_ejection(base: float, durations: list[float]) -> None:
    det, (host,) = detector(consecutive_5xx_errors=1, base_ejection_time_s=base)
    now = 1_000.0
    for expected in durations:
        assert det.report(host, 503, now)
        assert host.ejected_until - now == pytest.approx(expected)
        now = host.ejected_until
        assert det.tick(now)  # it comes back at once, so the multiplier is not decremented
        assert host.ejected_until == 0.0


def test_tick_returns_hosts_whose_ejection_ran_out() -> None:
    det, hosts = detector(3, consecutive_5xx_errors=1, base_ejection_time_s=10.0)
    assert det.report(hosts[0], 500, 0.0)
    assert det.report(hosts[1], 500, 5.0)
    assert det.ejected_count() == 2
    assert not det.tick(9.9)
    assert det.ejected_count() == 2
    assert det.tick(10.0)
    assert [bool(h.ejected_until) for h in hosts] == [False, True, False]
    assert not det.tick(12.0)
    assert det.tick(15.0)
    assert det.ejected_count() == 0
    assert not det.tick(100.0)


def test_the_multiplier_drops_by_one_each_interval_spent_not_ejected() -> None:
    det, (host,) = detector(consecutive_5xx_errors=1, base_ejection_time_s=10.0)
    now = 0.0
    for _ in range(3):
        assert det.report(host, 500, now)
        now = host.ejected_until
        det.tick(now)
    assert host.ejection_multiplier == 3
    # Ticks while ejected do not count.
    assert det.report(host, 500, now)  # ejected for 40 s
    assert host.ejection_multiplier == 4
    det.tick(now + 10.0)
    det.tick(now + 20.0)
    assert host.ejection_multiplier == 4
    now += 40.0
    assert det.tick(now)
    assert host.ejection_multiplier == 4
    # Two healthy intervals take two off: the next ejection lasts (4 - 2 + 1) x 10 s.
    det.tick(now + 10.0)
    det.tick(now + 20.0)
    assert host.ejection_multiplier == 2
    now += 20.0
    assert det.report(host, 500, now)
    assert host.ejected_until - now == 30.0
    # A host that stays healthy long enough starts again from the base time.
    now = host.ejected_until
    for i in range(10):
        det.tick(now + i)
    assert host.ejection_multiplier == 0
    assert det.report(host, 500, now + 10)
    assert host.ejected_until - (now + 10) == 10.0


def test_counts_start_again_after_an_ejection() -> None:
    det, (host,) = detector(consecutive_5xx_errors=3, base_ejection_time_s=10.0)
    assert feed(det, host, [500, 500, 500]) == [False, False, True]
    assert (host.consecutive_5xx, host.consecutive_gateway) == (0, 0)
    det.tick(200.0)
    assert feed(det, host, [500, 500]) == [False, False]
    assert not host.ejected_until


@pytest.mark.parametrize(
    ("hosts", "max_percent", "ejectable"),
    [
        (10, 20, 2),
        (10, 10, 1),
        (10, 100, 10),
        (4, 50, 2),
        (4, 49, 1),  # 2 of 4 would be 50% > 49%
        (3, 10, 1),  # one may always be ejected, even when it is more than the limit
        (2, 10, 1),
        (1, 10, 1),
    ],
)
def test_max_ejection_percent(hosts: int, max_percent: int, ejectable: int) -> None:
    pool = [FakeHost() for _ in range(hosts)]
    det = OutlierDetector(
        OutlierDetection(consecutive_5xx_errors=1, max_ejection_percent=max_percent), pool
    )
    results = [det.report(h, 500, 0.0) for h in pool]
    assert results == [True] * ejectable + [False] * (hosts - ejectable)
    assert det.ejected_count() == ejectable
    assert all(h.ejected_until == 0.0 for h in pool[ejectable:])


def test_a_refused_ejection_happens_once_room_is_made() -> None:
    pool = [FakeHost(), FakeHost(), FakeHost()]
    det = OutlierDetector(
        OutlierDetection(consecutive_5xx_errors=1, max_ejection_percent=10,
                         base_ejection_time_s=10.0),
        pool,
    )  # fmt: skip
    assert det.report(pool[0], 500, 0.0)
    assert not det.report(pool[1], 500, 1.0)
    assert det.tick(10.0)  # pool[0] returns
    assert det.report(pool[1], 500, 11.0)
    assert pool[1].ejected_until == 21.0
