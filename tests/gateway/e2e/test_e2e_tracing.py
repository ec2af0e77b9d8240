"""Traces from a running gateway: spans exported over OTLP (http/protobuf) and Zipkin (JSON
v2) to local receivers and decoded; W3C and B3 context reaching the backend; the access
log carrying the trace id.

Sampling is 100% so every request is traced, except where a test sends its own decision.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.gateway.e2e.helpers import ConfigDir, settings_yaml, start_gateway, wait_until
from tests.gateway.e2e.resilience_support import route_yaml, service_yaml
from tests.gateway.telemetry.trace_support import Receiver
from tests.support.backends import HttpBackend
from tests.support.gateway import GatewayProcess, free_port

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


@dataclass
class Setup:
    port: int
    gateway: GatewayProcess
    backend: HttpBackend
    otlp: Receiver
    zipkin: Receiver
    log: Path

    def get(self, path: str, **headers: str) -> dict[str, Any]:
        r = httpx.get(
            f"http://127.0.0.1:{self.port}{path}", headers={"host": "web.test", **headers}
        )
        assert r.status_code == 200
        seen: dict[str, Any] = r.json()["headers"]
        return seen

    def otlp_spans(self) -> list[Any]:
        spans = []
        for item in self.otlp.received:
            req = ExportTraceServiceRequest()
            req.ParseFromString(item.body)
            for rs in req.resource_spans:
                for ss in rs.scope_spans:
                    spans.extend(ss.spans)
        return spans

    def zipkin_spans(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in self.zipkin.received:
            out.extend(json.loads(item.body))
        return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    backend = HttpBackend("traced").start()
    otlp = Receiver().__enter__()
    zipkin = Receiver().__enter__()
    base = tmp_path_factory.mktemp("tracing")
    log = base / "access.log"
    cfg = ConfigDir(base / "cfg")
    port = free_port()
    cfg.gateway(port)
    telemetry = (
        "{tracing: {randomSamplingPercentage: 100, "
        f'otlp: {{endpoint: "{otlp.url("/v1/traces")}"}}, '
        f'zipkin: {{endpoint: "{zipkin.url("/api/v2/spans")}"}}}}, '
        f"accessLog: {{path: {log}}}}}"
    )
    cfg.write("settings.yaml", settings_yaml(drainTimeoutSeconds=1, telemetry=telemetry))
    cfg.write("web.yaml", service_yaml("web", [(backend.port, "r1/z1")]))
    cfg.write("routes.yaml", route_yaml("web.test", "web"))
    gw = start_gateway(cfg)
    yield Setup(port, gw, backend, otlp, zipkin, log)
    gw.stop()
    backend.stop()
    otlp.__exit__(None, None, None)
    zipkin.__exit__(None, None, None)


def _hex(b: bytes) -> str:
    return b.hex()


def test_w3c_parent_spans_exported_over_otlp_and_zipkin(setup: Setup) -> None:
    seen = setup.get("/echo?w3c", traceparent=f"00-{TRACE_ID}-{PARENT}-01")
    upstream = seen["traceparent"].split("-")
    assert upstream[1] == TRACE_ID  # the trace continues upstream
    client_span_id = upstream[2]

    def spans() -> list[Any]:
        found = [s for s in setup.otlp_spans() if _hex(s.trace_id) == TRACE_ID]
        return found if len(found) >= 2 else []

    found = wait_until(spans, timeout_s=15, what="two OTLP spans for the trace")
    server = next(s for s in found if s.kind == s.SPAN_KIND_SERVER)
    client = next(s for s in found if s.kind == s.SPAN_KIND_CLIENT)
    assert _hex(server.parent_span_id) == PARENT
    assert _hex(client.parent_span_id) == _hex(server.span_id)
    assert _hex(client.span_id) == client_span_id  # the backend saw the client span
    attrs = {a.key: a.value for a in server.attributes}
    assert attrs["http.request.method"].string_value == "GET"
    assert attrs["http.response.status_code"].int_value == 200
    zipkin = wait_until(
        lambda: [s for s in setup.zipkin_spans() if s["traceId"] == TRACE_ID],
        timeout_s=15,
        what="Zipkin spans for the trace",
    )
    assert {s["kind"] for s in zipkin} == {"SERVER", "CLIENT"}
    entry = wait_until(
        lambda: next(
            (json.loads(x) for x in setup.log.read_text().splitlines() if "w3c" in x), None
        ),
        what="the access log entry",
    )
    assert entry["trace_id"] == TRACE_ID


def test_b3_single_header_propagates(setup: Setup) -> None:
    trace = "80f198ee56343ba864fe8b2a57d3eff7"
    seen = setup.get("/echo?b3", b3=f"{trace}-e457b5a2e4d86bd1-1")
    assert seen["b3"].startswith(trace + "-")
    assert seen["traceparent"].split("-")[1] == trace


def test_b3_multi_header_propagates(setup: Setup) -> None:
    trace = "463ac35c9f6413ad48485a3953bb6124"
    seen = setup.get(
        "/echo?b3multi",
        **{"x-b3-traceid": trace, "x-b3-spanid": "a2fb4a1d1a96d312", "x-b3-sampled": "1"},
    )
    assert seen["x-b3-traceid"] == trace
    assert seen["x-b3-parentspanid"]  # the proxy's span is the backend's parent
    assert seen["x-b3-sampled"] == "1"


def test_parent_decision_not_sampled_is_kept(setup: Setup) -> None:
    trace = "0af7651916cd43dd8448eb211c80319c"
    seen = setup.get("/echo?unsampled", traceparent=f"00-{trace}-b7ad6b7169203331-00")
    assert seen["traceparent"].endswith("-00")
    setup.get("/echo?marker", traceparent=f"00-{'1' * 32}-{PARENT}-01")
    wait_until(
        lambda: any(_hex(s.trace_id) == "1" * 32 for s in setup.otlp_spans()),
        timeout_s=15,
        what="the marker trace",
    )
    assert not any(_hex(s.trace_id) == trace for s in setup.otlp_spans())
