"""The tracer's sampler: parent-based ratio sampling, plus the two B3 cases it cannot express.

``ParentBased(TraceIdRatioBased(ratio))`` decides every span: a span with a parent keeps the
parent's decision, a root span is sampled by its trace id (the low 64 bits, so every proxy on
the path agrees). B3 adds two cases that an OpenTelemetry ``SpanContext`` cannot carry:

- ids without a decision (``b3: {traceid}-{spanid}``): the decision is the proxy's, so the
  ratio sampler decides on the caller's trace id;
- a decision without ids (``b3: 1``, ``b3: d``, ``b3: 0``): the new trace takes it.

``gateway.telemetry.tracing`` marks those cases on the parent ``Context`` with the
pre-built contexts below; every other span goes straight to ``ParentBased``.
"""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.context import Context, create_key
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.span import TraceState
from opentelemetry.util.types import Attributes

_DECISION_KEY = create_key("isthmus-trace-decision")
_DEFER = "defer"

# Parent contexts (no span in them yet) that carry a B3-only decision.
DEFER_CONTEXT = Context({_DECISION_KEY: _DEFER})
SAMPLE_CONTEXT = Context({_DECISION_KEY: True})
DROP_CONTEXT = Context({_DECISION_KEY: False})
PLAIN_CONTEXT = Context()

_SAMPLE = SamplingResult(Decision.RECORD_AND_SAMPLE)
_DROP = SamplingResult(Decision.DROP)


class ProxySampler(Sampler):
    """``ParentBased(TraceIdRatioBased(ratio))``, honouring the B3 marks above."""

    def __init__(self, ratio: float) -> None:
        self.ratio_sampler = TraceIdRatioBased(ratio)
        self.parent_based = ParentBased(self.ratio_sampler)

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        if parent_context is not None:
            mark = parent_context.get(_DECISION_KEY)
            if mark is _DEFER:
                return self.ratio_sampler.should_sample(
                    parent_context, trace_id, name, kind, attributes, links
                )
            if mark is True:
                return _SAMPLE
            if mark is False:
                return _DROP
        return self.parent_based.should_sample(
            parent_context, trace_id, name, kind, attributes, links
        )

    def get_description(self) -> str:
        return f"ProxySampler{{ParentBased{{root:{self.ratio_sampler.get_description()}}}}}"
