"""Span exporters for the tracer: OTLP over http/protobuf and Zipkin JSON v2.

Built by ``gateway.telemetry.tracing`` from the snapshot's ``Tracing``. Both exporters are
the maintained OpenTelemetry packages; they run only on the batch processors' background
threads, never on the event loop. An unreachable collector must not flood the log, so the
Zipkin exporter (which raises on connection errors) is wrapped to fail quietly, and the
batch processor's per-span "queue full" warning is rate-limited.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.zipkin.encoder import Protocol
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from gateway.config.snapshot import Tracing

log = logging.getLogger("isthmus.tracing")

EXPORT_TIMEOUT_S = 5  # per export request; bounds how long shutdown can wait on a collector
_WARN_EVERY_S = 30.0


class TracingConfigError(ValueError):
    """The ``Tracing`` configuration cannot be used; the message names the field."""


def check_endpoint(url: str, field: str) -> str:
    """``url`` when it is an absolute http(s) URL with a host, else :class:`TracingConfigError`."""
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises on a bad port
    except ValueError as exc:
        raise TracingConfigError(f"tracing.{field}: {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TracingConfigError(
            f"tracing.{field}: {url!r} must be an http:// or https:// URL with a host"
        )
    return url


class _QuietExporter(SpanExporter):
    """Turns an exporter's exceptions into a failed export and at most one warning per
    ``_WARN_EVERY_S``: the batch thread would otherwise log a traceback per batch."""

    def __init__(self, inner: SpanExporter, name: str) -> None:
        self.inner = inner
        self._name = name
        self._warned_at = -_WARN_EVERY_S

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            return self.inner.export(spans)
        except Exception as exc:  # any failure is one lost batch, not a crash
            now = time.monotonic()
            if now - self._warned_at >= _WARN_EVERY_S:
                self._warned_at = now
                log.warning("%s export failed, %d spans dropped: %s", self._name, len(spans), exc)
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


def build_exporters(tracing: Tracing) -> list[SpanExporter]:
    """One exporter per configured endpoint (none when no endpoint is set)."""
    exporters: list[SpanExporter] = []
    if tracing.otlp_endpoint is not None:
        url = check_endpoint(tracing.otlp_endpoint, "otlp_endpoint")
        exporters.append(OTLPSpanExporter(endpoint=url, timeout=EXPORT_TIMEOUT_S))
    if tracing.zipkin_endpoint is not None:
        url = check_endpoint(tracing.zipkin_endpoint, "zipkin_endpoint")
        zipkin = ZipkinExporter(Protocol.V2, endpoint=url, timeout=EXPORT_TIMEOUT_S)
        exporters.append(_QuietExporter(zipkin, "zipkin"))
    return exporters


class _QueueFullLimiter(logging.Filter):
    """Lets one batch-processor "Queue full" warning through per ``_WARN_EVERY_S``. That
    warning is logged per dropped span, on the thread that ends the span (the event loop)."""

    def __init__(self) -> None:
        super().__init__()
        self._last = -_WARN_EVERY_S

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith("Queue full"):
            return True
        now = time.monotonic()
        if now - self._last < _WARN_EVERY_S:
            return False
        self._last = now
        return True


_limiter = _QueueFullLimiter()


def limit_queue_full_warnings() -> None:
    """Install the rate limit on the SDK's batch-processor logger (idempotent)."""
    logger = logging.getLogger("opentelemetry.sdk._shared_internal")
    if _limiter not in logger.filters:
        logger.addFilter(_limiter)
