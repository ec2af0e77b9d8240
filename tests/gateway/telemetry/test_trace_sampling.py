"""Parent-based ratio sampling: the caller's decision wins; without one, the trace id decides."""

from __future__ import annotations

import pytest
from trace_support import FixedTraceIds, evenly_spread_trace_ids, head

from gateway.config.snapshot import Tracing
from gateway.telemetry.tracing import Tracer

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"
H = list[tuple[bytes, bytes]]


def _tracer(percent: float, trace_ids: list[int] | None = None) -> Tracer:
    return Tracer(
        Tracing(sampling_percent=percent),
        id_generator=FixedTraceIds(trace_ids) if trace_ids is not None else None,
    )


# (case, headers, percent, sampled, keeps the caller's trace id)
DECISIONS: list[tuple[str, H, float, bool, bool]] = [
    ("traceparent sampled at 0%", [(b"traceparent", f"00-{TID}-{SID}-01".encode())], 0, True, True),
    ("traceparent not sampled at 100%", [(b"traceparent", f"00-{TID}-{SID}-00".encode())], 100,
     False, True),
    ("b3 sampled at 0%", [(b"b3", f"{TID}-{SID}-1".encode())], 0, True, True),
    ("b3 not sampled at 100%", [(b"b3", f"{TID}-{SID}-0".encode())], 100, False, True),
    ("b3 debug at 0%", [(b"b3", f"{TID}-{SID}-d".encode())], 0, True, True),
    ("b3 deny alone at 100%", [(b"b3", b"0")], 100, False, False),
    ("b3 accept alone at 0%", [(b"b3", b"1")], 0, True, False),
    ("b3 debug alone at 0%", [(b"b3", b"d")], 0, True, False),
    ("b3 ids, no decision, at 0%", [(b"b3", f"{TID}-{SID}".encode())], 0, False, True),
    ("b3 ids, no decision, at 100%", [(b"b3", f"{TID}-{SID}".encode())], 100, True, True),
    ("X-B3-Sampled 1 at 0%", [(b"x-b3-traceid", TID.encode()), (b"x-b3-spanid", SID.encode()),
                              (b"x-b3-sampled", b"1")], 0, True, True),
    ("X-B3-Sampled 0 alone at 100%", [(b"x-b3-sampled", b"0")], 100, False, False),
    ("X-B3-Flags 1 alone at 0%", [(b"x-b3-flags", b"1")], 0, True, False),
    ("no header at 100%", [], 100, True, False),
    ("no header at 0%", [], 0, False, False),
    ("invalid traceparent is ignored at 0%",
     [(b"traceparent", f"00-{TID.upper()}-{SID}-01".encode())], 0, False, False),
    ("invalid traceparent is ignored at 100%",
     [(b"traceparent", f"00-{TID}-{SID}-01-x".encode())], 100, True, False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("headers", "percent", "sampled", "same_trace"),
    [c[1:] for c in DECISIONS],
    ids=[c[0] for c in DECISIONS],
)
def test_trace_sampling_decision(
    headers: H, percent: float, sampled: bool, same_trace: bool
) -> None:
    tracer = _tracer(percent)
    try:
        server = tracer.start_server(head(headers))
        assert server is not None
        assert server.sampled is sampled
        assert server.recording is sampled
        assert (server.trace_id == TID) is same_trace
        # the decision travels upstream
        client = server.start_client(head(), "default/api:80", "10.0.0.7", 8080)
        traceparent = dict(client.headers)[b"traceparent"]
        assert traceparent.startswith(f"00-{server.trace_id}-".encode())
        assert traceparent.endswith(b"-01" if sampled else b"-00")
        client.end(200)
        server.end(200)
    finally:
        tracer.shutdown()


@pytest.mark.parametrize("percent", [0, 1, 25, 50, 99, 100])
def test_trace_sampling_ratio_for_new_traces(percent: int) -> None:
    ids = evenly_spread_trace_ids(100)
    tracer = _tracer(percent, ids)
    try:
        spans = [tracer.start_server(head()) for _ in ids]
        sampled = [s.trace_id for s in spans if s is not None and s.sampled]
        assert sampled == [format(t, "032x") for t in ids[:percent]]
    finally:
        tracer.shutdown()


@pytest.mark.parametrize("percent", [10, 50])
def test_trace_sampling_ratio_applies_to_the_callers_trace_id_when_b3_defers(
    percent: int,
) -> None:
    """B3 ids without a decision: the ratio decides on the caller's trace id, so every proxy
    on the path makes the same decision."""
    ids = evenly_spread_trace_ids(100)
    tracer = _tracer(percent)
    try:
        decisions = []
        for trace_id in ids:
            server = tracer.start_server(head([(b"b3", f"{trace_id:032x}-{SID}".encode())]))
            assert server is not None and server.trace_id == f"{trace_id:032x}"
            decisions.append(server.sampled)
        assert decisions == [i < percent for i in range(100)]
    finally:
        tracer.shutdown()


def test_trace_sampling_client_spans_follow_the_server_span() -> None:
    tracer = _tracer(100)
    try:
        server = tracer.start_server(head())
        assert server is not None and server.sampled
        for attempt in range(3):
            client = server.start_client(head(), "c", "10.0.0.1", 80, attempt)
            assert dict(client.headers)[b"traceparent"].endswith(b"-01")
            client.end(503)
        server.end(503, "URX")
    finally:
        tracer.shutdown()
