"""CircuitBreaker: the DestinationRule ``connectionPool`` limits, counted without I/O.

Each limit is driven to its edge and one step past it: what is admitted, what is refused
(and counted as a ``UO`` overflow), and that capacity coming back is usable again.
"""

from __future__ import annotations

import asyncio

import pytest

from gateway.config.snapshot import ConnectionPool
from gateway.upstream.circuit import CircuitBreaker


@pytest.mark.parametrize(
    ("limit", "attempts", "admitted"),
    [(1, 3, 1), (3, 3, 3), (3, 5, 3), (0, 2, 0), (100, 10, 10)],
)
def test_admit_request_caps_requests_in_flight(limit: int, attempts: int, admitted: int) -> None:
    breaker = CircuitBreaker(ConnectionPool(http2_max_requests=limit))
    results = [breaker.admit_request() for _ in range(attempts)]
    assert results == [True] * admitted + [False] * (attempts - admitted)
    assert breaker.requests == admitted
    assert breaker.overflows == attempts - admitted


@pytest.mark.parametrize(
    ("limit", "attempts", "admitted"),
    [(1, 3, 1), (2, 2, 2), (2, 4, 2), (0, 1, 0)],
)
def test_admit_pending_caps_requests_waiting_for_a_connection(
    limit: int, attempts: int, admitted: int
) -> None:
    breaker = CircuitBreaker(ConnectionPool(http1_max_pending_requests=limit))
    results = [breaker.admit_pending() for _ in range(attempts)]
    assert results == [True] * admitted + [False] * (attempts - admitted)
    assert breaker.pending == admitted
    assert breaker.overflows == attempts - admitted


def test_pending_and_requests_are_separate_limits() -> None:
    breaker = CircuitBreaker(ConnectionPool(http2_max_requests=5, http1_max_pending_requests=1))
    assert breaker.admit_request()
    assert breaker.admit_pending()
    assert not breaker.admit_pending()
    assert breaker.admit_request()
    assert (breaker.requests, breaker.pending, breaker.overflows) == (2, 1, 1)


def test_a_finished_request_frees_its_slot() -> None:
    breaker = CircuitBreaker(ConnectionPool(http2_max_requests=1, http1_max_pending_requests=1))
    assert breaker.admit_request() and not breaker.admit_request()
    breaker.requests -= 1  # what the exchange does when the request ends
    assert breaker.admit_request()
    assert breaker.admit_pending() and not breaker.admit_pending()
    breaker.pending -= 1  # the request got its connection
    assert breaker.admit_pending()


def test_defaults_are_unlimited() -> None:
    breaker = CircuitBreaker(ConnectionPool())
    assert all(breaker.admit_request() for _ in range(10_000))
    assert all(breaker.admit_pending() for _ in range(10_000))
    assert all(breaker.admit_retry(100.0, 10_000) for _ in range(1_000))
    assert breaker.overflows == 0


@pytest.mark.parametrize(
    ("max_retries", "budget_percent", "min_concurrency", "requests", "retries", "allowed"),
    [
        # The budget: retries in flight may reach budget_percent of the requests in flight.
        (1_000, 20.0, 3, 100, 19, True),
        (1_000, 20.0, 3, 100, 20, False),
        (1_000, 50.0, 3, 10, 4, True),
        (1_000, 50.0, 3, 10, 5, False),
        # ... but min_concurrency retries are always allowed.
        (1_000, 20.0, 3, 5, 2, True),
        (1_000, 20.0, 3, 5, 3, False),
        (1_000, 20.0, 3, 0, 2, True),
        (1_000, 0.0, 0, 100, 0, False),
        # maxRetries caps retries in flight whatever the budget says.
        (1, 100.0, 100, 100, 0, True),
        (1, 100.0, 100, 100, 1, False),
        (0, 100.0, 100, 100, 0, False),
    ],
)
def test_admit_retry_follows_max_retries_and_the_budget(
    max_retries: int,
    budget_percent: float,
    min_concurrency: int,
    requests: int,
    retries: int,
    allowed: bool,
) -> None:
    breaker = CircuitBreaker(ConnectionPool(max_retries=max_retries))
    breaker.requests = requests
    breaker.retries = retries
    assert breaker.admit_retry(budget_percent, min_concurrency) is allowed
    assert breaker.retries == retries + int(allowed)
    assert breaker.retries_total == int(allowed)
    assert breaker.overflows == 0  # a refused retry is not a UO overflow


def test_retry_budget_keeps_retries_to_a_fifth_of_the_load() -> None:
    breaker = CircuitBreaker(ConnectionPool())
    for _ in range(50):
        assert breaker.admit_request()
    granted = sum(1 for _ in range(100) if breaker.admit_retry(20.0, 3))
    assert granted == 10
    breaker.retry_done()
    assert breaker.retries == 9
    assert breaker.admit_retry(20.0, 3)
    assert breaker.retries_total == 11


def test_limits_follow_a_config_update_and_counts_survive_it() -> None:
    breaker = CircuitBreaker(ConnectionPool(http2_max_requests=2))
    assert breaker.admit_request() and breaker.admit_request()
    assert not breaker.admit_request()
    breaker.config = ConnectionPool(http2_max_requests=3)  # what a reload does
    assert breaker.requests == 2
    assert breaker.admit_request()
    assert not breaker.admit_request()
    breaker.config = ConnectionPool(http2_max_requests=1)
    breaker.requests -= 1
    assert not breaker.admit_request()  # still 2 in flight against a limit of 1


@pytest.mark.parametrize(("limit", "opened", "can"), [(1, 0, True), (1, 1, False), (3, 2, True)])
def test_can_connect_counts_open_connections(limit: int, opened: int, can: bool) -> None:
    breaker = CircuitBreaker(ConnectionPool(max_connections=limit))
    for _ in range(opened):
        breaker.connection_opened()
    assert breaker.can_connect() is can
    assert breaker.connections == opened


async def test_a_closed_connection_wakes_exactly_the_oldest_waiter() -> None:
    loop = asyncio.get_running_loop()
    breaker = CircuitBreaker(ConnectionPool(max_connections=1))
    breaker.connection_opened()
    assert not breaker.can_connect()
    first, second = loop.create_future(), loop.create_future()
    breaker.waiters.extend([first, second])
    breaker.connection_closed()
    assert breaker.connections == 0 and breaker.can_connect()
    assert first.done() and not second.done()
    assert list(breaker.waiters) == [second]


async def test_wake_skips_waiters_that_gave_up() -> None:
    loop = asyncio.get_running_loop()
    breaker = CircuitBreaker(ConnectionPool(max_connections=1))
    gone, waiting, later = loop.create_future(), loop.create_future(), loop.create_future()
    gone.cancel()
    breaker.waiters.extend([gone, waiting, later])
    breaker.wake()
    assert waiting.done() and waiting.result() is None
    assert not later.done()
    assert list(breaker.waiters) == [later]
    breaker.wake()
    breaker.wake()  # nobody left: nothing happens
    assert later.done() and not breaker.waiters
