"""Load balancers: round robin, least request (power of two choices), random, ring hash.

The ring hash is checked for the properties ``consistentHash`` promises: a key keeps its
endpoint, every worker and process agrees on it, and adding an endpoint moves only about
1/n of the keys, all of them to the new endpoint.
"""

from __future__ import annotations

import random
import subprocess
import sys
from collections import Counter

import pytest

from gateway.upstream.lb import (
    LeastRequest,
    Random,
    RingHash,
    RoundRobin,
    hash_key,
    make_balancer,
)
from gateway.upstream.pool import EndpointPool


def pools(n: int, start: int = 0) -> list[EndpointPool]:
    return [
        EndpointPool(
            f"10.0.{i // 250}.{i % 250 + 1}", 8080, protocol="http1", connect_timeout_s=1.0
        )
        for i in range(start, start + n)
    ]


KEYS = [hash_key(f"user-{i}".encode()) for i in range(5_000)]


class ScriptedRandom(random.Random):
    """``randrange`` answers from a script, to drive the two choices."""

    def __init__(self, script: list[int]) -> None:
        super().__init__(0)
        self.script = list(script)

    def randrange(self, *args: object, **kwargs: object) -> int:
        return self.script.pop(0)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_round_robin_cycles_through_every_endpoint(n: int) -> None:
    eps = pools(n)
    rr = RoundRobin(eps)
    picks = [rr.pick(0) for _ in range(3 * n)]
    assert Counter(p.key for p in picks if p) == {p.key: 3 for p in eps}
    first = eps.index(picks[0])  # type: ignore[arg-type]
    assert picks == [eps[(first + i) % n] for i in range(3 * n)]


def test_round_robin_edge_cases() -> None:
    assert RoundRobin([]).pick(0) is None
    (only,) = pools(1)
    rr = RoundRobin([only])
    assert all(rr.pick(k) is only for k in range(5))


def test_round_robin_starts_at_a_random_offset() -> None:
    eps = pools(8)
    firsts = {RoundRobin(eps).pick(0).key for _ in range(200)}  # type: ignore[union-attr]
    assert len(firsts) > 1


@pytest.mark.parametrize(
    ("active", "draws", "expected"),
    [
        ([5, 2, 9], [0, 1], 1),  # the one with fewer requests in flight
        ([5, 2, 9], [2, 0], 0),
        ([5, 2, 9], [2, 2], 2),  # both draws on one endpoint: that one
        ([3, 3, 0], [1, 0], 1),  # a tie keeps the first draw
    ],
)
def test_least_request_takes_the_less_busy_of_two(
    active: list[int], draws: list[int], expected: int
) -> None:
    eps = pools(len(active))
    for p, a in zip(eps, active, strict=True):
        p.active_requests = a
    lr = LeastRequest(eps, ScriptedRandom(draws))
    assert lr.pick(0) is eps[expected]


def test_least_request_steers_away_from_a_busy_endpoint() -> None:
    eps = pools(4)
    eps[0].active_requests = 100
    lr = LeastRequest(eps, random.Random(7))
    got = Counter(lr.pick(0).key for _ in range(4_000))  # type: ignore[union-attr]
    # The busy one wins only when both draws land on it: 1/16 of the time.
    assert got[eps[0].key] / 4_000 == pytest.approx(1 / 16, abs=0.02)
    assert LeastRequest([]).pick(0) is None
    (only,) = pools(1)
    assert LeastRequest([only]).pick(0) is only


def test_random_reaches_every_endpoint() -> None:
    eps = pools(5)
    rnd = Random(eps, random.Random(3))
    got = Counter(rnd.pick(0).key for _ in range(5_000))  # type: ignore[union-attr]
    assert set(got) == {p.key for p in eps}
    assert all(800 < n < 1_200 for n in got.values())
    assert Random([]).pick(0) is None


def test_ring_hash_same_key_same_endpoint_whatever_the_order() -> None:
    eps = pools(7)
    ring = RingHash(eps)
    other = RingHash(list(reversed(eps)))
    for key in KEYS[:500]:
        first = ring.pick(key)
        assert first is not None
        assert ring.pick(key) is first
        assert other.pick(key) is first


def test_ring_hash_is_stable_across_processes() -> None:
    eps = pools(5)
    ring = RingHash(eps)
    here = [ring.pick(k).key for k in KEYS[:200]]  # type: ignore[union-attr]
    script = (
        "import sys\n"
        "from gateway.upstream.lb import RingHash, hash_key\n"
        "from gateway.upstream.pool import EndpointPool\n"
        "eps = [EndpointPool(f'10.0.0.{i + 1}', 8080, protocol='http1', connect_timeout_s=1.0)"
        " for i in range(5)]\n"
        "ring = RingHash(eps)\n"
        "keys = [hash_key(f'user-{i}'.encode()) for i in range(200)]\n"
        "print(hash_key(b'abc'))\n"
        "print(' '.join(ring.pick(k).key for k in keys))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": ""},
        cwd=str(__import__("pathlib").Path(__file__).resolve().parents[3]),
    ).stdout.split("\n")
    assert int(out[0]) == hash_key(b"abc")
    assert out[1].split(" ") == here


@pytest.mark.parametrize("n", [3, 10, 30])
def test_adding_an_endpoint_moves_a_small_share_of_the_keys_mostly_to_it(n: int) -> None:
    # Envoy's ring gives each endpoint ceil(ring_size / n) points, so an endpoint added
    # also takes a few points from the others: the new endpoint gets its 1/(n+1) and the
    # total churn stays under 2/(n+1) (a modulo hash would move n/(n+1)).
    eps = pools(n)
    (new,) = pools(1, start=n)
    before = RingHash(eps)
    after = RingHash([*eps, new])
    moved = [k for k in KEYS if before.pick(k) is not after.pick(k)]
    to_new = sum(1 for k in KEYS if after.pick(k) is new)
    assert to_new / len(KEYS) == pytest.approx(1 / (n + 1), abs=0.05)
    assert len(moved) / len(KEYS) < 2 / (n + 1) + 0.01
    assert to_new / len(moved) > 0.5


def test_removing_an_endpoint_moves_its_keys_and_few_others() -> None:
    n = 10
    eps = pools(n)
    before = RingHash(eps)
    after = RingHash(eps[:-1])
    orphans = [k for k in KEYS if before.pick(k) is eps[-1]]
    assert orphans and all(after.pick(k) is not eps[-1] for k in orphans)
    others = [k for k in KEYS if before.pick(k) is not eps[-1]]
    kept = sum(1 for k in others if after.pick(k) is before.pick(k))
    assert kept / len(others) > 1 - 1 / n


def test_ring_hash_spreads_keys() -> None:
    eps = pools(4)
    ring = RingHash(eps, ring_size=1024)
    got = Counter(ring.pick(k).key for k in KEYS)  # type: ignore[union-attr]
    assert set(got) == {p.key for p in eps}
    assert all(0.15 < n / len(KEYS) < 0.35 for n in got.values())


def test_ring_hash_edge_cases() -> None:
    assert RingHash([]).pick(123) is None
    eps = pools(3)
    tiny = RingHash(eps, ring_size=1)  # at least one point per endpoint
    assert {tiny.pick(k).key for k in KEYS} == {p.key for p in eps}  # type: ignore[union-attr]
    assert tiny.pick(2**64 - 1) is not None  # past the last point: wraps to the first


@pytest.mark.parametrize(
    ("policy", "ring", "kind"),
    [
        ("ROUND_ROBIN", None, RoundRobin),
        ("LEAST_REQUEST", None, LeastRequest),
        ("RANDOM", None, Random),
        ("ROUND_ROBIN", 1024, RingHash),  # consistentHash wins over simple
        ("LEAST_REQUEST", 64, RingHash),
    ],
)
def test_make_balancer(policy: str, ring: int | None, kind: type) -> None:
    assert isinstance(make_balancer(policy, pools(2), ring), kind)


def test_hash_key_is_64_bit_and_spread() -> None:
    values = {hash_key(bytes([i])) for i in range(256)}
    assert len(values) == 256
    assert all(0 <= v < 2**64 for v in values)
