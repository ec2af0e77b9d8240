"""Server and client spans: names, kinds, parents, semantic-convention attributes, status, the
headers sent upstream, and the tracer's lifecycle (off, reconfigure, shutdown)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from trace_support import head

from gateway.config.snapshot import Node, Tracing
from gateway.telemetry import propagation
from gateway.telemetry.tracing import Tracer, TracingConfigError, reconfigure

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"
PRINCIPAL = "spiffe://cluster.local/ns/shop/sa/frontend"


@pytest.fixture
def memory() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(memory: InMemorySpanExporter) -> Iterator[Tracer]:
    t = Tracer(Tracing(sampling_percent=100), Node(workload="gw"), extra_exporters=[memory])
    yield t
    t.shutdown()


def _finished(tracer: Tracer, memory: InMemorySpanExporter) -> dict[SpanKind, list[ReadableSpan]]:
    assert tracer.force_flush()
    spans: dict[SpanKind, list[ReadableSpan]] = {SpanKind.SERVER: [], SpanKind.CLIENT: []}
    for span in memory.get_finished_spans():
        spans[span.kind].append(span)
    return spans


def test_trace_spans_server_and_client_with_semantic_conventions(
    tracer: Tracer, memory: InMemorySpanExporter
) -> None:
    request = head(
        [(b"traceparent", f"00-{TID}-{SID}-01".encode()), (b"user-agent", b"curl/8.5")],
        method="POST",
        path="/cart/add?item=3",
        authority="shop.example",
        scheme="https",
        version="2",
    )
    server = tracer.start_server(request, "192.0.2.10", PRINCIPAL, peer_port=40000)
    assert server is not None
    upstream = head(method="POST", path="/add?item=3&sig=secret", authority="cart")
    first = server.start_client(upstream, "shop/cart:8080", "10.0.0.7", 8080, 0)
    first.end(None, "UF")
    second = server.start_client(upstream, "shop/cart:8080", "10.0.0.8", 8080, 1)
    second.inject(upstream.headers)
    second.end(201)
    server.end(201, "-", cluster="shop/cart:8080")

    spans = _finished(tracer, memory)
    (srv,) = spans[SpanKind.SERVER]
    try1, try2 = sorted(spans[SpanKind.CLIENT], key=lambda s: s.start_time or 0)

    assert srv.name == "POST"
    assert srv.context is not None and srv.parent is not None
    assert format(srv.context.trace_id, "032x") == TID == server.trace_id
    assert format(srv.parent.span_id, "016x") == SID and srv.parent.is_remote
    assert dict(srv.attributes or {}) == {
        "http.request.method": "POST",
        "url.path": "/cart/add",
        "url.scheme": "https",
        "server.address": "shop.example",
        "server.port": 443,
        "network.protocol.version": "2",
        "client.address": "192.0.2.10",
        "client.port": 40000,
        "user_agent.original": "curl/8.5",
        "isthmus.peer.principal": PRINCIPAL,
        "http.response.status_code": 201,
        "isthmus.response_flags": "-",
        "isthmus.upstream.cluster": "shop/cart:8080",
    }
    assert srv.status.status_code is StatusCode.UNSET

    for span in (try1, try2):
        assert span.name == "POST"
        assert span.parent is not None and span.parent.span_id == srv.context.span_id
        assert span.context is not None and span.context.trace_id == srv.context.trace_id
    assert dict(try1.attributes or {}) == {
        "http.request.method": "POST",
        "server.address": "10.0.0.7",
        "server.port": 8080,
        "url.full": "http://cart/add?item=3&sig=REDACTED",
        "isthmus.upstream.cluster": "shop/cart:8080",
        "error.type": "UF",
    }
    assert try1.status.status_code is StatusCode.ERROR
    attrs2 = dict(try2.attributes or {})
    assert attrs2["http.request.resend_count"] == 1
    assert attrs2["http.response.status_code"] == 201
    assert attrs2["server.address"] == "10.0.0.8"
    assert "error.type" not in attrs2
    assert try2.status.status_code is StatusCode.UNSET

    # The backend sees the second try's client span as its parent.
    seen = propagation.extract(upstream.headers)
    assert try2.context is not None
    assert (seen.trace_id, seen.span_id, seen.sampled) == (
        try2.context.trace_id,
        try2.context.span_id,
        True,
    )
    assert [k for k, _ in upstream.headers].count(b"traceparent") == 1


def test_trace_spans_b3_requests_get_b3_upstream_with_the_server_span_as_parent(
    tracer: Tracer, memory: InMemorySpanExporter
) -> None:
    request = head(
        [
            (b"x-b3-traceid", TID.encode()),
            (b"x-b3-spanid", SID.encode()),
            (b"x-b3-sampled", b"1"),
            (b"b3", f"{TID}-{SID}-1".encode()),
        ]
    )
    server = tracer.start_server(request)
    assert server is not None
    client = server.start_client(head(), "c", "10.0.0.1", 80)
    out = dict(client.headers)
    client.end(200)
    server.end(200)
    spans = _finished(tracer, memory)
    (srv,) = spans[SpanKind.SERVER]
    (cli,) = spans[SpanKind.CLIENT]
    assert srv.context is not None and cli.context is not None
    assert out[b"x-b3-traceid"] == TID.encode()
    assert out[b"x-b3-spanid"] == b"%016x" % cli.context.span_id
    assert out[b"x-b3-parentspanid"] == b"%016x" % srv.context.span_id
    assert out[b"b3"] == b"%s-%016x-1-%016x" % (
        TID.encode(),
        cli.context.span_id,
        srv.context.span_id,
    )
    assert out[b"traceparent"] == b"00-%s-%016x-01" % (TID.encode(), cli.context.span_id)


def test_trace_spans_tracestate_passes_through(
    tracer: Tracer, memory: InMemorySpanExporter
) -> None:
    request = head(
        [(b"traceparent", f"00-{TID}-{SID}-01".encode()), (b"tracestate", b"rojo=1, congo=2")]
    )
    server = tracer.start_server(request)
    assert server is not None
    client = server.start_client(head(), "c")
    assert dict(client.headers)[b"tracestate"] == b"rojo=1,congo=2"
    assert b"b3" not in dict(client.headers)  # the request spoke W3C only
    client.end(200)
    server.end(200)
    (srv,) = _finished(tracer, memory)[SpanKind.SERVER]
    assert srv.context is not None
    assert srv.context.trace_state.to_header() == "rojo=1,congo=2"


@pytest.mark.parametrize(
    ("status", "flags", "error_type", "code"),
    [
        (200, "-", None, StatusCode.UNSET),
        (404, "NR", None, StatusCode.UNSET),  # 4xx is the client's error, not the server's
        (503, "UO", "503", StatusCode.ERROR),
        (0, "DC", "DC", StatusCode.ERROR),  # no response was sent
    ],
)
def test_trace_spans_server_status(
    tracer: Tracer,
    memory: InMemorySpanExporter,
    status: int,
    flags: str,
    error_type: str | None,
    code: StatusCode,
) -> None:
    server = tracer.start_server(head())
    assert server is not None
    server.end(status, flags)
    server.end(500, "XX")  # a second end changes nothing
    (srv,) = _finished(tracer, memory)[SpanKind.SERVER]
    attrs = dict(srv.attributes or {})
    assert attrs.get("error.type") == error_type
    assert attrs["isthmus.response_flags"] == flags
    assert attrs.get("http.response.status_code") == (status or None)
    assert srv.status.status_code is code


@pytest.mark.parametrize(
    ("status", "error", "error_type", "code"),
    [
        (200, None, None, StatusCode.UNSET),
        (404, None, "404", StatusCode.ERROR),  # for a client, 4xx is an error
        (503, None, "503", StatusCode.ERROR),
        (None, "UT", "UT", StatusCode.ERROR),
        (None, None, "_OTHER", StatusCode.ERROR),
    ],
)
def test_trace_spans_client_status(
    tracer: Tracer,
    memory: InMemorySpanExporter,
    status: int | None,
    error: str | None,
    error_type: str | None,
    code: StatusCode,
) -> None:
    server = tracer.start_server(head())
    assert server is not None
    client = server.start_client(head(), "c")
    client.end(status, error)
    client.end(200)  # a second end changes nothing
    server.end(200)
    (cli,) = _finished(tracer, memory)[SpanKind.CLIENT]
    attrs = dict(cli.attributes or {})
    assert attrs.get("error.type") == error_type
    assert attrs.get("http.response.status_code") == status
    assert cli.status.status_code is code


def test_trace_spans_unknown_method(tracer: Tracer, memory: InMemorySpanExporter) -> None:
    server = tracer.start_server(head(method="PROPFIND", authority="[2001:db8::1]:8443"))
    assert server is not None
    server.end(207)
    (srv,) = _finished(tracer, memory)[SpanKind.SERVER]
    attrs = dict(srv.attributes or {})
    assert srv.name == "HTTP"
    assert attrs["http.request.method"] == "_OTHER"
    assert attrs["http.request.method_original"] == "PROPFIND"
    assert (attrs["server.address"], attrs["server.port"]) == ("2001:db8::1", 8443)


def test_trace_spans_unsampled_requests_record_nothing_and_still_propagate(
    memory: InMemorySpanExporter,
) -> None:
    tracer = Tracer(Tracing(sampling_percent=100), extra_exporters=[memory])
    try:
        server = tracer.start_server(head([(b"traceparent", f"00-{TID}-{SID}-00".encode())]))
        assert server is not None and not server.recording
        client = server.start_client(head(), "c")
        client.end(200)
        server.end(200)
        assert tracer.force_flush() and memory.get_finished_spans() == ()
        # the backend's parent is the proxy's own (unrecorded) span, not the caller's
        ctx = propagation.extract(client.headers)
        assert (format(ctx.trace_id, "032x"), ctx.sampled) == (TID, False)
        assert format(ctx.span_id, "016x") == server.span_id != SID
    finally:
        tracer.shutdown()


def test_trace_spans_off_makes_no_opentelemetry_call(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("OpenTelemetry was called with tracing off")

    monkeypatch.setattr(SdkTracer, "start_span", boom)
    monkeypatch.setattr(propagation, "extract", boom)
    tracer = Tracer(None)
    request = head([(b"traceparent", f"00-{TID}-{SID}-01".encode())])
    assert not tracer.enabled
    assert tracer.start_server(request, "192.0.2.1", PRINCIPAL) is None
    assert request.headers == [(b"traceparent", f"00-{TID}-{SID}-01".encode())]
    assert tracer.force_flush()
    tracer.shutdown()


def _batch_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith("OtelBatch"))


def test_trace_spans_reconfigure_keeps_an_equal_tracer_and_replaces_a_changed_one() -> None:
    node = Node(workload="gw")
    off = Tracer(None, node)
    assert reconfigure(off, None, Node(workload="other")) is off
    on = reconfigure(off, Tracing(sampling_percent=5), node)
    try:
        assert on is not off and on.enabled
        assert reconfigure(on, Tracing(sampling_percent=5), Node(workload="gw")) is on
        changed = reconfigure(on, Tracing(sampling_percent=6), node)
        assert changed is not on and changed.enabled
        changed.shutdown()
        relabelled = reconfigure(on, Tracing(sampling_percent=5), Node(workload="gw2"))
        assert relabelled is not on
        relabelled.shutdown()
        assert not reconfigure(on, None, node).enabled
    finally:
        on.shutdown()


def test_trace_spans_shutdown_stops_the_batch_threads() -> None:
    before = _batch_threads()
    tracer = Tracer(
        Tracing(sampling_percent=100),
        extra_exporters=[InMemorySpanExporter(), InMemorySpanExporter()],
    )
    assert _batch_threads() == before + 2
    tracer.shutdown()
    tracer.shutdown()  # idempotent
    assert _batch_threads() == before
    assert not tracer.enabled and tracer.start_server(head()) is None


async def test_trace_spans_aclose_flushes_spans_ended_during_the_grace_period() -> None:
    memory = InMemorySpanExporter()
    tracer = Tracer(Tracing(sampling_percent=100), extra_exporters=[memory])
    server = tracer.start_server(head())
    assert server is not None
    server.end(200)
    await tracer.aclose()
    assert len(memory.get_finished_spans()) == 1
    assert not tracer.enabled


@pytest.mark.parametrize(
    ("config", "field"),
    [
        (Tracing(sampling_percent=101), "tracing.sampling_percent"),
        (Tracing(sampling_percent=-1), "tracing.sampling_percent"),
        (Tracing(sampling_percent=float("nan")), "tracing.sampling_percent"),
        (Tracing(otlp_endpoint="collector:4318"), "tracing.otlp_endpoint"),
        (Tracing(otlp_endpoint="ftp://collector/v1/traces"), "tracing.otlp_endpoint"),
        (Tracing(zipkin_endpoint="http:///api/v2/spans"), "tracing.zipkin_endpoint"),
        (Tracing(zipkin_endpoint="http://zipkin:99999/api/v2/spans"), "tracing.zipkin_endpoint"),
    ],
)
def test_trace_spans_bad_configuration_is_refused_by_field(config: Tracing, field: str) -> None:
    before = _batch_threads()
    with pytest.raises(TracingConfigError, match=field):
        Tracer(config)
    assert _batch_threads() == before
