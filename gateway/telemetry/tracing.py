"""Request tracing with the OpenTelemetry SDK: a server span per request, a client span per
upstream try.

The worker builds one :class:`Tracer` from the snapshot's ``Telemetry.tracing`` and ``Node``
(:func:`reconfigure` on each new snapshot) and calls :meth:`Tracer.shutdown` on drain. The
request path (``gateway.proxy``) calls, per request::

    server = tracer.start_server(head, peer_address, peer_principal)  # None: tracing is off
    ...
    client = server.start_client(upstream_head, cluster, address, port, attempt)
    client.inject(upstream_head.headers)          # traceparent, tracestate, b3 / X-B3-*
    ...
    client.end(status_code, error)                # per try
    server.end(status_code, response_flags)       # once; server.trace_id for the access log

Costs: with tracing off, ``start_server`` returns None before touching OpenTelemetry. With
tracing on, an unsampled request creates one non-recording span and no client spans (the
upstream sees the proxy's server span as parent, flagged not sampled); attributes are only
built for sampled spans. Ended spans go to one ``BatchSpanProcessor`` per exporter: a bounded
queue drained by a background thread, so export never runs on the event loop and a slow
collector costs dropped spans, not memory.

Attribute names are the stable HTTP semantic conventions, plus ``isthmus.peer.principal``
(the downstream peer's SPIFFE ID), ``isthmus.response_flags`` (Envoy-style) and
``isthmus.upstream.cluster``. Span names are the method (``HTTP`` for unknown methods). Server
spans are ERROR for 5xx (and when no response was sent), client spans for 4xx, 5xx and failed
tries, as the conventions say.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Tracer as SdkTracer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    StatusCode,
    TraceFlags,
    set_span_in_context,
)
from opentelemetry.trace.span import DEFAULT_TRACE_STATE, TraceState

from gateway.codec.messages import Headers, RequestHead
from gateway.config.snapshot import Node, Tracing
from gateway.telemetry import propagation
from gateway.telemetry.propagation import TraceContext
from gateway.telemetry.trace_attributes import (
    Attributes,
    client_attributes,
    error_type,
    server_attributes,
    span_name,
)
from gateway.telemetry.trace_export import (
    TracingConfigError,
    build_exporters,
    limit_queue_full_warnings,
)
from gateway.telemetry.trace_sampler import (
    DEFER_CONTEXT,
    DROP_CONTEXT,
    PLAIN_CONTEXT,
    SAMPLE_CONTEXT,
    ProxySampler,
)

__all__ = ["ClientSpan", "ServerSpan", "Tracer", "TracingConfigError", "reconfigure"]

MAX_QUEUE_SPANS = 2048  # per exporter; beyond it new spans are dropped
MAX_EXPORT_BATCH_SPANS = 512
SCHEDULE_DELAY_S = 2.0

_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)


class Tracer:
    """The tracing pipeline of one configuration; ``tracing`` None means tracing is off.

    ``extra_exporters`` and ``id_generator`` are for tests. Raises
    :class:`TracingConfigError` for an unusable configuration.
    """

    def __init__(
        self,
        tracing: Tracing | None,
        node: Node | None = None,
        *,
        extra_exporters: Sequence[SpanExporter] = (),
        id_generator: IdGenerator | None = None,
        max_queue_spans: int = MAX_QUEUE_SPANS,
        schedule_delay_s: float = SCHEDULE_DELAY_S,
    ) -> None:
        self.tracing = tracing
        self.node = node if node is not None else Node()
        self._tracer: SdkTracer | None = None
        self._provider: TracerProvider | None = None
        if tracing is None:
            return
        percent = tracing.sampling_percent
        if not 0.0 <= percent <= 100.0:
            raise TracingConfigError(
                f"tracing.sampling_percent: {percent!r} is not between 0 and 100"
            )
        exporters = [*build_exporters(tracing), *extra_exporters]
        limit_queue_full_warnings()
        provider = TracerProvider(
            sampler=ProxySampler(percent / 100.0),
            resource=_resource(tracing, self.node),
            shutdown_on_exit=False,  # the worker shuts it down; atexit would pin old tracers
            id_generator=id_generator,
        )
        for exporter in exporters:
            provider.add_span_processor(
                BatchSpanProcessor(
                    exporter,
                    max_queue_size=max_queue_spans,
                    schedule_delay_millis=schedule_delay_s * 1000.0,
                    max_export_batch_size=min(MAX_EXPORT_BATCH_SPANS, max_queue_spans),
                )
            )
        tracer = provider.get_tracer("isthmus.gateway")
        if not isinstance(tracer, SdkTracer):  # OTEL_SDK_DISABLED: no ids to propagate
            provider.shutdown()
            return
        self._provider = provider
        self._tracer = tracer

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    def start_server(
        self,
        request: RequestHead,
        peer_address: str | None = None,
        peer_principal: str | None = None,
        *,
        peer_port: int | None = None,
    ) -> ServerSpan | None:
        """Start the server span of a downstream request; None when tracing is off."""
        tracer = self._tracer
        if tracer is None:
            return None
        incoming = propagation.extract(request.headers)
        span = tracer.start_span(
            span_name(request.method),
            _parent_context(incoming),
            SpanKind.SERVER,
        )
        attrs = None
        if span.is_recording():
            attrs = server_attributes(request, peer_address, peer_port, peer_principal)
        return ServerSpan(tracer, span, incoming, attrs)

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Export every ended span now (blocking; tests and shutdown use it)."""
        if self._provider is None:
            return True
        return self._provider.force_flush(int(timeout_s * 1000))

    def shutdown(self) -> None:
        """Flush, stop the batch threads and close the exporters (blocking, bounded by the
        exporters' timeouts). Later requests are not traced. Idempotent."""
        provider, self._provider, self._tracer = self._provider, None, None
        if provider is not None:
            provider.shutdown()

    async def aclose(self, grace_s: float = 0.0) -> None:
        """:meth:`shutdown` off the event loop, after ``grace_s`` for the requests still
        running on this tracer to end their spans."""
        if grace_s > 0:
            await asyncio.sleep(grace_s)
        await asyncio.shield(asyncio.to_thread(self.shutdown))

    def __repr__(self) -> str:
        if self.tracing is None:
            return "<Tracer off>"
        t = self.tracing
        return (
            f"<Tracer {t.sampling_percent}% otlp={t.otlp_endpoint} zipkin={t.zipkin_endpoint}"
            f"{'' if self.enabled else ' (shut down)'}>"
        )


def reconfigure(current: Tracer, tracing: Tracing | None, node: Node) -> Tracer:
    """The tracer for a new snapshot: ``current`` itself when its configuration is the same,
    else a new one. The caller retires a replaced tracer with ``await old.aclose(grace_s)``."""
    if current.tracing == tracing and (tracing is None or current.node == node):
        return current
    return Tracer(tracing, node)


class ServerSpan:
    """The span of one downstream request. ``trace_id`` is for the access log."""

    __slots__ = (
        "_attrs",
        "_context",
        "_ended",
        "_incoming",
        "_sc",
        "_span",
        "_tracer",
        "recording",
    )

    def __init__(
        self,
        tracer: SdkTracer,
        span: Span,
        incoming: TraceContext,
        attrs: Attributes | None = None,
    ) -> None:
        self._tracer = tracer
        self._span = span
        self._sc = span.get_span_context()
        self._incoming = incoming
        self._context: Context | None = None
        # Attributes known at the start; set on the span with the rest when it ends (one
        # pass through the SDK's attribute checks and lock instead of two).
        self._attrs = attrs
        self._ended = False
        self.recording = span.is_recording()

    @property
    def trace_id(self) -> str:
        return format(self._sc.trace_id, "032x")

    @property
    def span_id(self) -> str:
        return format(self._sc.span_id, "016x")

    @property
    def sampled(self) -> bool:
        return self._sc.trace_flags.sampled

    def start_client(
        self,
        request: RequestHead,
        cluster: str,
        address: str | None = None,
        port: int | None = None,
        attempt: int = 0,
    ) -> ClientSpan:
        """Start the span of one upstream try (``attempt`` 0 is the first). ``request`` is
        the upstream request head; ``address``/``port`` the endpoint tried."""
        sc = self._sc
        incoming = self._incoming
        if not self.recording:
            # Nothing of this trace is recorded here: the backend's parent is the proxy's
            # (unrecorded) server span, and no client span is made.
            headers = propagation.outgoing(
                incoming.formats,
                sc.trace_id,
                sc.span_id,
                False,
                parent_span_id=incoming.span_id,
                tracestate=incoming.tracestate,
            )
            return ClientSpan(None, headers)
        context = self._context
        if context is None:
            context = self._context = set_span_in_context(self._span, PLAIN_CONTEXT)
        span = self._tracer.start_span(span_name(request.method), context, SpanKind.CLIENT)
        csc = span.get_span_context()
        headers = propagation.outgoing(
            incoming.formats,
            csc.trace_id,
            csc.span_id,
            csc.trace_flags.sampled,
            debug=incoming.debug,
            parent_span_id=sc.span_id,
            tracestate=incoming.tracestate,
        )
        return ClientSpan(
            span, headers, client_attributes(request, cluster, address, port, attempt)
        )

    def end(
        self, status_code: int, response_flags: str = "-", *, cluster: str | None = None
    ) -> None:
        """End the span: ``status_code`` is what the client got (0: no response was sent),
        ``response_flags`` the Envoy-style flags, ``cluster`` the routed cluster if any."""
        if self._ended:
            return
        self._ended = True
        if not self.recording:
            return
        span = self._span
        attrs = self._attrs if self._attrs is not None else {}
        attrs["isthmus.response_flags"] = response_flags
        if cluster:
            attrs["isthmus.upstream.cluster"] = cluster
        if status_code > 0:
            attrs["http.response.status_code"] = status_code
        if status_code >= 500 or status_code <= 0:
            attrs["error.type"] = (
                str(status_code) if status_code > 0 else error_type(response_flags)
            )
            span.set_status(StatusCode.ERROR)
        span.set_attributes(attrs)
        span.end()

    def __repr__(self) -> str:
        return f"<ServerSpan {self.trace_id}/{self.span_id} sampled={self.sampled}>"


class ClientSpan:
    """The span of one upstream try; ``headers`` are its trace headers for the upstream."""

    __slots__ = ("_attrs", "_ended", "_span", "headers")

    def __init__(
        self, span: Span | None, headers: Headers, attrs: Attributes | None = None
    ) -> None:
        self._span = span
        self.headers = headers
        self._attrs = attrs  # set on the span when it ends, with the outcome
        self._ended = False

    def inject(self, headers: Headers) -> None:
        """Replace the trace headers of an upstream request's header list with ours."""
        propagation.inject(headers, self.headers)

    def end(self, status_code: int | None, error: str | None = None) -> None:
        """End the try: ``status_code`` of the upstream response (None: none came), and
        ``error``, a short low-cardinality reason (an Envoy flag such as ``UF``, ``UT``,
        ``UC``) when the try failed."""
        if self._ended:
            return
        self._ended = True
        span = self._span
        if span is None:
            return
        attrs = self._attrs if self._attrs is not None else {}
        if status_code is not None:
            attrs["http.response.status_code"] = status_code
        if error is not None or status_code is None or status_code >= 400:
            attrs["error.type"] = error or (
                str(status_code) if status_code is not None else "_OTHER"
            )
            span.set_status(StatusCode.ERROR)
        span.set_attributes(attrs)
        span.end()


# --- helpers -----------------------------------------------------------------------------


def _resource(tracing: Tracing, node: Node) -> Resource:
    attrs: Attributes = dict(node.labels)
    attrs["service.name"] = tracing.service_name or node.workload
    attrs["k8s.namespace.name"] = node.namespace
    attrs["k8s.cluster.name"] = node.cluster
    if node.region:
        attrs["cloud.region"] = node.region
    if node.zone:
        attrs["cloud.availability_zone"] = node.zone
    return Resource.create(attrs)


def _parent_context(incoming: TraceContext) -> Context:
    """The OpenTelemetry parent context for what the request carried."""
    if incoming.trace_id:
        sampled = incoming.sampled
        state = DEFAULT_TRACE_STATE
        if incoming.tracestate is not None:
            state = _trace_state(incoming.tracestate)
        parent = SpanContext(
            incoming.trace_id,
            incoming.span_id,
            True,
            _SAMPLED if sampled else _NOT_SAMPLED,
            state,
        )
        base = DEFER_CONTEXT if sampled is None else PLAIN_CONTEXT
        return set_span_in_context(NonRecordingSpan(parent), base)
    if incoming.sampled is None:
        return PLAIN_CONTEXT
    return SAMPLE_CONTEXT if incoming.sampled else DROP_CONTEXT


def _trace_state(tracestate: bytes) -> TraceState:
    pairs: list[tuple[str, str]] = []
    for member in tracestate.decode("ascii").split(","):
        key, _, value = member.partition("=")
        pairs.append((key, value))
    return TraceState(pairs)
