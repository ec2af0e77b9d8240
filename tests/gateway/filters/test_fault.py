"""Fault: aborts in HTTP and gRPC form, the delay on the request context, deterministic
percentages with an injected random source, and the unresolved-ExtensionRef stand-in."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from gateway.codec.messages import RequestHead
from gateway.config.snapshot import FaultFilter, RouteRule, UnresolvedFilter
from gateway.filters.base import RequestContext
from gateway.filters.chain import build_filters
from gateway.filters.fault import Fault
from gateway.filters.grpc_status import encode_message
from gateway.filters.unresolved_ref import UnresolvedRef

GRPC = [(b"content-type", b"application/grpc")]


def ctx(headers: list[tuple[bytes, bytes]] | None = None) -> RequestContext:
    return RequestContext(request=RequestHead("POST", "/pkg.Svc/Call", "h", headers or []))


def draws(values: Iterable[float]) -> Callable[[], float]:
    it = iter(values)
    return lambda: next(it)


def fault(rand: Callable[[], float] | None = None, **kwargs: object) -> Fault:
    config = FaultFilter(name="default/chaos", **kwargs)  # type: ignore[arg-type]
    return Fault(config, rand=rand or draws([]))


def test_http_abort() -> None:
    reply = fault(abort_http_status=503, abort_percent=100.0).on_request(ctx())
    assert reply is not None
    assert (reply.status, reply.flag, reply.body) == (503, "FI", b"fault filter abort\n")


def test_grpc_abort_is_trailers_only_with_the_code() -> None:
    reply = fault(abort_grpc_status=14, abort_percent=100.0).on_request(ctx(GRPC))
    assert reply is not None
    assert (reply.status, reply.flag, reply.body) == (200, "FI", b"")
    assert reply.headers == [
        (b"content-type", b"application/grpc"),
        (b"grpc-status", b"14"),
        (b"grpc-message", b"fault filter abort"),
    ]


@pytest.mark.parametrize(("code", "status"), [(14, 503), (8, 429), (5, 404), (16, 401), (2, 500)])
def test_grpc_status_on_an_http_request_maps_to_http(code: int, status: int) -> None:
    reply = fault(abort_grpc_status=code, abort_percent=100.0).on_request(ctx())
    assert reply is not None and (reply.status, reply.flag) == (status, "FI")


@pytest.mark.parametrize(("status", "code"), [(503, b"14"), (404, b"12"), (403, b"7"), (418, b"2")])
def test_http_status_on_a_grpc_request_maps_to_grpc(status: int, code: bytes) -> None:
    reply = fault(abort_http_status=status, abort_percent=100.0).on_request(ctx(GRPC))
    assert reply is not None and reply.status == 200
    assert dict(reply.headers)[b"grpc-status"] == code


def test_delay_sets_the_context_and_forwards() -> None:
    c = ctx()
    assert fault(delay_s=1.5, delay_percent=100.0).on_request(c) is None
    assert c.delay_s == 1.5


def test_delay_and_abort_together_flag_both() -> None:
    c = ctx()
    f = fault(delay_s=0.2, delay_percent=100.0, abort_http_status=500, abort_percent=100.0)
    reply = f.on_request(c)
    assert reply is not None and (reply.status, reply.flag) == (500, "DI,FI")
    assert c.delay_s == 0.2


@pytest.mark.parametrize(
    ("percent", "draw", "hit"),
    [(50.0, 0.49, True), (50.0, 0.5, False), (0.5, 0.004, True), (0.5, 0.006, False)],
)
def test_percentages_use_the_injected_draw(percent: float, draw: float, hit: bool) -> None:
    aborted = fault(draws([draw]), abort_http_status=503, abort_percent=percent).on_request(ctx())
    assert (aborted is not None) == hit
    c = ctx()
    assert fault(draws([draw]), delay_s=1.0, delay_percent=percent).on_request(c) is None
    assert c.delay_s == (1.0 if hit else 0.0)


def test_delay_and_abort_draw_independently() -> None:
    """First draw decides the delay, second the abort."""
    f = fault(draws([0.9, 0.1, 0.1, 0.9]), delay_s=1.0, delay_percent=50.0,
              abort_http_status=503, abort_percent=50.0)  # fmt: skip
    first, second = ctx(), ctx()
    reply = f.on_request(first)
    assert reply is not None and reply.flag == "FI" and first.delay_s == 0.0
    assert f.on_request(second) is None and second.delay_s == 1.0


def test_unset_percentages_inject_nothing() -> None:
    """As in Istio, a fault without a percentage applies to no request (and draws nothing)."""
    c = ctx()
    assert fault(delay_s=1.0, abort_http_status=503).on_request(c) is None
    assert c.delay_s == 0.0


def test_default_random_aborts_about_the_percent() -> None:
    f = Fault(FaultFilter(name="x", abort_http_status=503, abort_percent=25.0))
    aborted = sum(f.on_request(ctx()) is not None for _ in range(4000))
    assert 800 < aborted < 1200


def test_sequence_of_draws_is_deterministic() -> None:
    values = itertools.cycle([0.05, 0.15, 0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 0.95])
    f = fault(lambda: next(values), abort_http_status=503, abort_percent=30.0)
    assert sum(f.on_request(ctx()) is not None for _ in range(100)) == 30


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"abort_percent": 101.0}, "fault.abort.percentage: 101.0 is not within 0..100"),
        ({"delay_percent": -1.0}, "fault.delay.percentage: -1.0 is not within 0..100"),
        ({"abort_http_status": 99}, "fault.abort.httpStatus: 99 is not within 200..599"),
        ({"abort_grpc_status": 0}, "fault.abort.grpcStatus: 0 is not a gRPC error code"),
        ({"delay_s": -1.0}, "fault.delay.fixedDelay: -1.0s is negative"),
    ],
)
def test_unusable_config_is_refused(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace(".", r"\.")):
        fault(**kwargs)


def test_chain_builds_fault_and_unresolved_filters() -> None:
    rule = RouteRule(
        filters=(
            FaultFilter(name="default/chaos", abort_http_status=503, abort_percent=100.0),
            UnresolvedFilter(target="RateLimit default/gone"),
        )
    )
    built = build_filters(rule)
    assert [type(f) for f in built] == [Fault, UnresolvedRef]


def test_unresolved_extension_answers_500() -> None:
    reply = UnresolvedRef(UnresolvedFilter(target="Fault default/gone")).on_request(ctx())
    assert reply is not None and reply.status == 500


def test_grpc_message_is_percent_encoded() -> None:
    assert encode_message("50% off: café") == b"50%25 off: caf%C3%A9"
