"""RateLimit: token arithmetic on an injected clock, the 429 and its headers, the keys, the
response headers, and the bucket table shared between processes."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.codec.messages import RequestHead, ResponseHead
from gateway.config.snapshot import RateLimitFilter, RateLimitKey, RouteRule
from gateway.filters import ratelimit_table
from gateway.filters.base import RequestContext
from gateway.filters.chain import build_filters
from gateway.filters.rate_limit import RateLimit, merge_headers
from gateway.filters.ratelimit_table import (
    ENV_VAR,
    Bucket,
    BucketTable,
    Decision,
    create_file,
    refill,
    shared_for_workers,
    sweep_stale,
)


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def config(
    max_tokens: int = 3,
    per_fill: int = 2,
    interval: float = 1.0,
    key: RateLimitKey = "Route",
    header: str | None = None,
    scope: str = "HTTPRoute default/r spec.rules[0]",
    response_headers: bool = True,
) -> RateLimitFilter:
    return RateLimitFilter(name="default/limit", scope=scope, max_tokens=max_tokens,
                           tokens_per_fill=per_fill, fill_interval_s=interval, key=key,
                           header=header, response_headers=response_headers)  # fmt: skip


def limiter(clock: Clock, table: BucketTable | None = None, **kwargs: object) -> RateLimit:
    return RateLimit(config(**kwargs), table=table or BucketTable.private(64), clock=clock)  # type: ignore[arg-type]


def ctx(headers: list[tuple[bytes, bytes]] | None = None, address: str = "10.0.0.1",
        principal: str | None = None) -> RequestContext:  # fmt: skip
    request = RequestHead("GET", "/", "h", headers or [])
    return RequestContext(request=request, downstream_address=address, peer_principal=principal)


def allowed(f: RateLimit, c: RequestContext | None = None) -> bool:
    return f.on_request(c or ctx()) is None


# -- token arithmetic ---------------------------------------------------------------------------


def test_refill_adds_whole_fills_and_keeps_the_phase() -> None:
    bucket = Bucket(max_tokens=10, tokens_per_fill=2, fill_interval_s=1.0)
    assert refill(0.0, 100.0, 100.99, bucket) == (0.0, 100.0)
    assert refill(0.0, 100.0, 101.0, bucket) == (2.0, 101.0)
    assert refill(1.0, 100.0, 102.5, bucket) == (5.0, 102.0)
    assert refill(3.0, 100.0, 200.0, bucket) == (10.0, 200.0)  # capped at max_tokens


def test_bucket_starts_full_then_refills_per_interval() -> None:
    clock = Clock(1000.0)
    f = limiter(clock, max_tokens=3, per_fill=2, interval=1.0)
    assert [allowed(f) for _ in range(4)] == [True, True, True, False]
    clock.now = 1000.999
    assert not allowed(f)
    clock.now = 1001.0  # one fill: 2 tokens
    assert [allowed(f) for _ in range(3)] == [True, True, False]
    clock.now = 1010.0  # many fills, capped at 3
    assert [allowed(f) for _ in range(4)] == [True, True, True, False]


def test_429_carries_retry_after_and_ratelimit_headers() -> None:
    clock = Clock(1000.0)
    f = limiter(clock, max_tokens=2, per_fill=1, interval=10.0)
    assert allowed(f) and allowed(f)
    clock.now = 1002.5
    reply = f.on_request(ctx())
    assert reply is not None
    assert (reply.status, reply.flag, reply.body) == (429, "RL", b"rate limited\n")
    assert reply.headers == [
        (b"retry-after", b"8"),  # the next fill is at 1010: 7.5 s, rounded up
        (b"ratelimit-limit", b"2"),
        (b"ratelimit-remaining", b"0"),
        (b"ratelimit-reset", b"8"),
    ]


def test_grpc_request_gets_unavailable_in_grpc_form() -> None:
    f = limiter(Clock(), max_tokens=1)
    grpc = ctx([(b"content-type", b"application/grpc+proto")])
    assert f.on_request(grpc) is None
    reply = f.on_request(grpc)
    assert reply is not None
    assert (reply.status, reply.flag, reply.body) == (200, "RL", b"")
    headers = dict(reply.headers)
    assert headers[b"grpc-status"] == b"14"
    assert headers[b"grpc-message"] == b"rate limited"
    assert headers[b"content-type"] == b"application/grpc"
    assert headers[b"ratelimit-remaining"] == b"0"


# -- keys ---------------------------------------------------------------------------------------


def test_route_key_is_one_bucket_for_every_client() -> None:
    f = limiter(Clock(), max_tokens=2)
    assert allowed(f, ctx(address="10.0.0.1")) and allowed(f, ctx(address="10.0.0.2"))
    assert not allowed(f, ctx(address="10.0.0.3"))


def test_header_key_one_bucket_per_value_and_one_for_absent() -> None:
    f = limiter(Clock(), max_tokens=1, key="Header", header="X-Api-Key")
    a, b = ctx([(b"x-api-key", b"a")]), ctx([(b"x-api-key", b"b")])
    assert allowed(f, a) and not allowed(f, a)
    assert allowed(f, b) and not allowed(f, b)
    assert allowed(f, ctx()) and not allowed(f, ctx())  # leaving it out does not escape
    assert allowed(f, ctx([(b"x-api-key", b"")]))  # an empty value is a value


def test_client_ip_key() -> None:
    f = limiter(Clock(), max_tokens=1, key="ClientIP")
    assert allowed(f, ctx(address="10.0.0.1")) and not allowed(f, ctx(address="10.0.0.1"))
    assert allowed(f, ctx(address="10.0.0.2"))


def test_peer_identity_key_falls_back_to_the_address() -> None:
    f = limiter(Clock(), max_tokens=1, key="PeerIdentity")
    alice = "spiffe://td/ns/a/sa/alice"
    assert allowed(f, ctx(address="10.0.0.1", principal=alice))
    assert not allowed(f, ctx(address="10.0.0.2", principal=alice))  # same peer, new address
    assert allowed(f, ctx(address="10.0.0.1", principal="spiffe://td/ns/a/sa/bob"))
    assert allowed(f, ctx(address="10.0.0.1"))  # no principal: keyed by address
    assert not allowed(f, ctx(address="10.0.0.1"))


def test_scopes_and_shapes_do_not_share_buckets() -> None:
    table, clock = BucketTable.private(64), Clock()
    one = limiter(clock, table, max_tokens=1, scope="rule 0")
    other_rule = limiter(clock, table, max_tokens=1, scope="rule 1")
    same_rule = limiter(clock, table, max_tokens=1, scope="rule 0")  # a reload, same shape
    reshaped = limiter(clock, table, max_tokens=2, scope="rule 0")
    assert allowed(one) and not allowed(one)
    assert allowed(other_rule)
    assert not allowed(same_rule)  # keeps the bucket across a rebuild
    assert allowed(reshaped)  # a new shape starts afresh


# -- response headers ---------------------------------------------------------------------------


def test_allowed_responses_get_the_ratelimit_headers() -> None:
    clock = Clock(1000.0)
    f = limiter(clock, max_tokens=5, per_fill=1, interval=2.0)
    c = ctx()
    assert allowed(f, c)
    clock.now = 1000.5
    response = ResponseHead(200, [(b"content-type", b"text/plain")])
    f.on_response(c, response)
    assert response.headers == [
        (b"content-type", b"text/plain"),
        (b"ratelimit-limit", b"5"),
        (b"ratelimit-remaining", b"4"),
        (b"ratelimit-reset", b"2"),  # next fill at 1002: 1.5 s, rounded up
    ]


def test_full_bucket_resets_in_zero() -> None:
    clock = Clock(1000.0)
    f = limiter(clock, max_tokens=5, per_fill=1, interval=2.0)
    c = ctx()
    assert allowed(f, c)
    clock.now = 1002.0
    response = ResponseHead(200, [])
    f.on_response(c, response)
    assert dict(response.headers)[b"ratelimit-remaining"] == b"5"
    assert dict(response.headers)[b"ratelimit-reset"] == b"0"


def test_response_headers_can_be_turned_off() -> None:
    f = limiter(Clock(), response_headers=False)
    c = ctx()
    assert allowed(f, c)
    response = ResponseHead(200, [])
    f.on_response(c, response)
    assert response.headers == []


def test_the_tightest_limit_wins() -> None:
    tight = [
        (b"ratelimit-limit", b"10"),
        (b"ratelimit-remaining", b"1"),
        (b"ratelimit-reset", b"3"),
    ]
    headers = [(b"x", b"y"), *tight]
    merge_headers(headers, 4, [(b"ratelimit-limit", b"5"), (b"ratelimit-remaining", b"4")])
    assert headers == [(b"x", b"y"), *tight]
    merge_headers(headers, 0, [(b"ratelimit-limit", b"5"), (b"ratelimit-remaining", b"0")])
    assert headers == [(b"x", b"y"), (b"ratelimit-limit", b"5"), (b"ratelimit-remaining", b"0")]


# -- construction -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 0}, "rateLimit.maxTokens: 0 is less than 1"),
        ({"per_fill": 0}, "rateLimit.tokensPerFill: 0 is less than 1"),
        ({"interval": 0.0}, "rateLimit.fillInterval: 0.0s is not positive"),
        ({"key": "Header"}, "rateLimit.key.header: required when the key is Header"),
    ],
)
def test_unusable_config_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        limiter(Clock(), **kwargs)


def test_chain_builds_the_filter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ratelimit_table, "_process_table", BucketTable.private(64))
    (f,) = build_filters(RouteRule(filters=(config(),)))
    assert isinstance(f, RateLimit)
    assert repr(f) == "<RateLimit default/limit 3 tokens +2/1s by Route>"


# -- the table ----------------------------------------------------------------------------------


def test_peek_takes_nothing_and_an_unknown_key_is_full() -> None:
    table, bucket = BucketTable.private(64), Bucket(3, 1, 1.0)
    assert table.peek(b"k", bucket, 10.0) == Decision(True, 3, 0.0)
    assert table.take(b"k", bucket, 10.0) == Decision(True, 2, 1.0)
    assert table.peek(b"k", bucket, 10.25) == Decision(True, 2, 0.75)
    assert table.take(b"k", bucket, 10.5) == Decision(True, 1, 0.5)


def test_a_full_window_evicts_the_bucket_full_again_soonest() -> None:
    table = BucketTable.private(ratelimit_table.WINDOW)  # a single window
    slow, fast = Bucket(1, 1, 100.0), Bucket(1, 1, 1.0)
    for i in range(ratelimit_table.WINDOW - 1):
        assert table.take(b"slow%d" % i, slow, 0.0).allowed
    assert table.take(b"fast", fast, 0.0).allowed  # full again at 1.0, the others at 100
    assert table.take(b"new", slow, 0.5).allowed  # takes the fast key's slot
    for i in range(ratelimit_table.WINDOW - 1):
        assert not table.take(b"slow%d" % i, slow, 0.5).allowed  # still held
    assert table.take(b"fast", fast, 0.5).allowed  # it was evicted: starts full again


_WORKER = """
import sys
from gateway.filters.ratelimit_table import Bucket, BucketTable
table = BucketTable.open(sys.argv[1])
bucket = Bucket(max_tokens=int(sys.argv[2]), tokens_per_fill=1, fill_interval_s=3600.0)
sys.stdin.readline()  # start together
ok = sum(table.take(b"shared", bucket, 1000.0).allowed for _ in range(int(sys.argv[3])))
print(ok)
"""


def test_the_limit_holds_across_processes(tmp_path: Path) -> None:
    """Four processes race for the same bucket; exactly ``max_tokens`` requests get through."""
    path = str(tmp_path / "table")
    create_file(path, slots=64)
    root = str(Path(__file__).resolve().parents[3])
    env = {**os.environ, "PYTHONPATH": root}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, path, "20000", "6000"],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(4)
    ]  # fmt: skip
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    counts = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert sum(counts) == 20000  # without the lock, lost updates let all 24000 through
    assert BucketTable.open(path).peek(b"shared", Bucket(20000, 1, 3600.0), 1000.0).remaining == 0


def test_a_table_file_is_checked_when_opened(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus"
    bogus.write_bytes(b"x" * 100)
    with pytest.raises(ValueError, match="is not a rate limit table"):
        BucketTable.open(str(bogus))


def test_supervisor_table_is_exported_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    with shared_for_workers(str(tmp_path), slots=64) as path:
        assert path is not None and os.environ[ENV_VAR] == path
        assert Path(path).name.startswith(f"isthmus-ratelimit-{os.getpid()}-")
        table = BucketTable.open(path)
        assert table.shared and table.take(b"k", Bucket(1, 1, 1.0), 0.0).allowed
        table.close()
    assert not Path(path).exists()
    assert ENV_VAR not in os.environ


def test_stale_tables_of_dead_supervisors_are_swept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f"isthmus-ratelimit-{dead.stdout.strip()}-abcd"
    live = tmp_path / f"isthmus-ratelimit-{os.getpid()}-abcd"
    other = tmp_path / "unrelated"
    for p in (stale, live, other):
        p.write_bytes(b"")
    assert sweep_stale(str(tmp_path)) == [str(stale)]
    assert live.exists() and other.exists() and not stale.exists()


def test_without_a_shared_table_limits_hold_per_process(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    monkeypatch.setattr(ratelimit_table, "_process_table", None)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    with caplog.at_level(logging.WARNING, logger="isthmus.ratelimit"):
        table = ratelimit_table.process_table()
    assert not table.shared
    assert "limits hold per process" in caplog.text
    assert ratelimit_table.process_table() is table  # opened once
