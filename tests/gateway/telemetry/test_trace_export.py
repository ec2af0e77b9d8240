"""Export end to end: spans reach a local collector over OTLP http/protobuf and Zipkin JSON v2,
and are decoded there."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as PbStatus
from trace_support import Receiver, head, receiver

from gateway.config.snapshot import Node, Tracing
from gateway.telemetry import propagation, trace_export
from gateway.telemetry.tracing import Tracer

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"
PRINCIPAL = "spiffe://cluster.local/ns/shop/sa/frontend"
NODE = Node(
    workload="ingress",
    namespace="shop",
    cluster="east",
    region="eu-west",
    zone="eu-west-1a",
    labels=(("app", "isthmus-ingress"), ("version", "v2")),
)


def _traffic(tracer: Tracer) -> list[tuple[bytes, bytes]]:
    """One request from a W3C caller, failing over to a second endpoint; returns the
    headers the backend got."""
    server = tracer.start_server(
        head(
            [(b"traceparent", f"00-{TID}-{SID}-01".encode()), (b"user-agent", b"curl/8")],
            path="/api/items?id=7",
        ),
        "192.0.2.10",
        PRINCIPAL,
    )
    assert server is not None
    upstream = head(authority="api")
    first = server.start_client(upstream, "shop/api:80", "10.0.0.7", 8080, 0)
    first.end(503)
    second = server.start_client(upstream, "shop/api:80", "10.0.0.8", 8080, 1)
    second.inject(upstream.headers)
    second.end(200)
    server.end(200, "-", cluster="shop/api:80")
    return upstream.headers


def _pb_attrs(values: Any) -> dict[str, object]:
    out: dict[str, object] = {}
    for kv in values:
        assert isinstance(kv, KeyValue)
        kind = kv.value.WhichOneof("value")
        assert kind is not None
        out[kv.key] = getattr(kv.value, kind)
    return out


def _flush(tracer: Tracer) -> None:
    assert tracer.force_flush(10)


def test_trace_export_otlp_http_protobuf() -> None:
    with receiver() as collector:
        tracer = Tracer(
            Tracing(sampling_percent=0, otlp_endpoint=collector.url("/v1/traces")), NODE
        )
        try:
            sent = _traffic(tracer)
            _flush(tracer)
        finally:
            tracer.shutdown()
    (post,) = collector.received
    assert post.path == "/v1/traces"
    assert post.content_type == "application/x-protobuf"
    request = ExportTraceServiceRequest.FromString(post.body)

    (resource_spans,) = request.resource_spans
    resource = _pb_attrs(resource_spans.resource.attributes)
    assert resource["service.name"] == "ingress"
    assert resource["k8s.namespace.name"] == "shop"
    assert resource["k8s.cluster.name"] == "east"
    assert resource["cloud.region"] == "eu-west"
    assert resource["cloud.availability_zone"] == "eu-west-1a"
    assert resource["app"] == "isthmus-ingress" and resource["version"] == "v2"

    spans = [s for scope in resource_spans.scope_spans for s in scope.spans]
    (server,) = [s for s in spans if s.kind == PbSpan.SPAN_KIND_SERVER]
    clients = sorted(
        (s for s in spans if s.kind == PbSpan.SPAN_KIND_CLIENT),
        key=lambda s: s.start_time_unix_nano,
    )
    assert len(clients) == 2
    assert server.trace_id.hex() == TID
    assert server.parent_span_id.hex() == SID  # the caller's span
    assert server.name == "GET"
    srv = _pb_attrs(server.attributes)
    assert srv["http.request.method"] == "GET"
    assert srv["url.path"] == "/api/items"
    assert srv["url.scheme"] == "http"
    assert (srv["server.address"], srv["server.port"]) == ("shop.example", 8080)
    assert srv["network.protocol.version"] == "1.1"
    assert srv["http.response.status_code"] == 200
    assert srv["client.address"] == "192.0.2.10"
    assert srv["user_agent.original"] == "curl/8"
    assert srv["isthmus.peer.principal"] == PRINCIPAL
    assert srv["isthmus.response_flags"] == "-"
    assert srv["isthmus.upstream.cluster"] == "shop/api:80"
    assert server.status.code == PbStatus.STATUS_CODE_UNSET

    for client in clients:
        assert client.trace_id == server.trace_id
        assert client.parent_span_id == server.span_id
        assert client.name == "GET"
    first, second = (_pb_attrs(c.attributes) for c in clients)
    assert first["http.response.status_code"] == 503 and first["error.type"] == "503"
    assert clients[0].status.code == PbStatus.STATUS_CODE_ERROR
    assert (first["server.address"], first["server.port"]) == ("10.0.0.7", 8080)
    assert "http.request.resend_count" not in first
    assert second["http.request.resend_count"] == 1
    assert second["isthmus.upstream.cluster"] == "shop/api:80"
    assert clients[1].status.code == PbStatus.STATUS_CODE_UNSET

    # what the backend got names the exported second try as its parent
    backend = propagation.extract(sent)
    assert backend.span_id.to_bytes(8, "big") == clients[1].span_id
    assert backend.trace_id.to_bytes(16, "big") == server.trace_id


def test_trace_export_zipkin_json_v2() -> None:
    with receiver(status=202) as zipkin:
        tracer = Tracer(
            Tracing(
                sampling_percent=0,
                zipkin_endpoint=zipkin.url("/api/v2/spans"),
                service_name="edge-gateway",
            ),
            NODE,
        )
        try:
            _traffic(tracer)
            _flush(tracer)
        finally:
            tracer.shutdown()
    (post,) = zipkin.received
    assert post.path == "/api/v2/spans"
    assert post.content_type == "application/json"
    spans = json.loads(post.body)
    assert isinstance(spans, list) and len(spans) == 3
    (server,) = [s for s in spans if s["kind"] == "SERVER"]
    clients = sorted((s for s in spans if s["kind"] == "CLIENT"), key=lambda s: s["timestamp"])
    assert server["traceId"] == TID and server["parentId"] == SID
    assert server["name"] == "GET"
    assert server["localEndpoint"]["serviceName"] == "edge-gateway"
    tags = server["tags"]
    assert tags["http.request.method"] == "GET"
    assert tags["http.response.status_code"] == "200"
    assert tags["isthmus.peer.principal"] == PRINCIPAL
    assert tags["url.path"] == "/api/items"
    assert tags["app"] == "isthmus-ingress"  # resource attributes become tags
    for client in clients:
        assert client["traceId"] == TID
        assert client["parentId"] == server["id"]
        assert client["tags"]["isthmus.upstream.cluster"] == "shop/api:80"
    assert clients[0]["tags"]["otel.status_code"] == "ERROR"
    assert clients[0]["tags"]["error.type"] == "503"
    assert clients[1]["tags"]["http.request.resend_count"] == "1"
    assert clients[1]["tags"]["server.address"] == "10.0.0.8"


def test_trace_export_both_collectors_get_the_same_spans() -> None:
    with receiver() as otlp, receiver(status=202) as zipkin:
        tracer = Tracer(
            Tracing(
                sampling_percent=100,
                otlp_endpoint=otlp.url("/v1/traces"),
                zipkin_endpoint=zipkin.url("/api/v2/spans"),
            )
        )
        try:
            for _ in range(5):
                server = tracer.start_server(head())
                assert server is not None
                server.end(200)
            _flush(tracer)
        finally:
            tracer.shutdown()
    pb_ids = {
        s.span_id.hex()
        for post in otlp.received
        for rs in ExportTraceServiceRequest.FromString(post.body).resource_spans
        for scope in rs.scope_spans
        for s in scope.spans
    }
    zipkin_ids = {s["id"] for post in zipkin.received for s in json.loads(post.body)}
    assert len(pb_ids) == 5 and pb_ids == zipkin_ids


def test_trace_export_unsampled_traces_are_not_sent() -> None:
    with receiver() as collector:
        tracer = Tracer(Tracing(sampling_percent=0, otlp_endpoint=collector.url("/v1/traces")))
        try:
            for _ in range(20):
                server = tracer.start_server(head())
                assert server is not None and not server.sampled
                server.end(200)
            _flush(tracer)
        finally:
            tracer.shutdown()
    assert collector.received == []


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_trace_export_unreachable_zipkin_loses_spans_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/api/v2/spans"
    tracer = Tracer(Tracing(sampling_percent=100, zipkin_endpoint=url))
    caplog.set_level(logging.WARNING)
    try:
        for _ in range(3):
            server = tracer.start_server(head())
            assert server is not None
            server.end(200)
            _flush(tracer)  # three failed exports
    finally:
        tracer.shutdown()
    warnings = [r for r in caplog.records if r.name == "isthmus.tracing"]
    assert len(warnings) == 1 and "zipkin export failed" in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.exc_info]  # no tracebacks


def test_trace_export_full_queue_drops_spans_and_warns_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stalled collector: the batch thread waits on one batch of 4, the queue holds 4
    more, the rest are dropped, with one warning rather than one per span."""
    monkeypatch.setattr(trace_export._limiter, "_last", float("-inf"))
    with receiver() as collector:
        collector.gate.clear()
        tracer = Tracer(
            Tracing(sampling_percent=100, otlp_endpoint=collector.url("/v1/traces")),
            max_queue_spans=4,
        )
        caplog.set_level(logging.WARNING)
        try:
            for _ in range(20):
                server = tracer.start_server(head())
                assert server is not None
                server.end(200)
            collector.gate.set()
            _flush(tracer)
        finally:
            tracer.shutdown()
    exported = sum(
        len(scope.spans)
        for post in collector.received
        for rs in ExportTraceServiceRequest.FromString(post.body).resource_spans
        for scope in rs.scope_spans
    )
    assert 4 <= exported <= 8
    queue_full = [r for r in caplog.records if r.getMessage().startswith("Queue full")]
    assert len(queue_full) == 1


def test_trace_export_receiver_fixture_is_local() -> None:
    with Receiver() as r:
        assert r.url("/x").startswith("http://127.0.0.1:")
