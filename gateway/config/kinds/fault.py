"""``isthmus.dev/v1alpha1 Fault``: inject delays and aborts into the requests of route rules.

A route rule uses it through a Gateway API filter
``{type: ExtensionRef, extensionRef: {group: isthmus.dev, kind: Fault, name: X}}`` naming an
object in the route's namespace. The spec is Istio's ``HTTPFaultInjection``; the loader
validates it, ``gateway.config.translate`` calls :meth:`Fault.filter` for the snapshot
``FaultFilter`` and ``gateway.filters.fault`` runs it.

=============================  =============================================================
spec field                     meaning
=============================  =============================================================
``delay.fixedDelay``           wait this long before forwarding (Istio duration: ``5s``,
                               ``1.5s``, ``500ms``; at least 1ms)
``delay.percentage.value``     share of requests delayed, 0 to 100 (unset: none, as in Istio)
``abort.httpStatus``           answer with this status (200 to 599) instead of forwarding
``abort.grpcStatus``           ... or with this gRPC status name (``UNAVAILABLE``, ...)
``abort.percentage.value``     share of requests aborted, 0 to 100 (unset: none, as in Istio)
=============================  =============================================================

Exactly one of ``httpStatus`` and ``grpcStatus`` is set in an abort. A gRPC request
(``content-type: application/grpc``) is answered the gRPC way (200 with ``grpc-status``), an
HTTP status being mapped to its gRPC code; a plain HTTP request gets the HTTP status, a gRPC
status being mapped to its HTTP status. Rejected by name: Istio's deprecated ``percent``,
``exponentialDelay`` and ``http2Error``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from gateway.config.kinds.durations import duration_problem, seconds
from gateway.config.kinds.meta import ISTHMUS_GROUP, Object
from gateway.config.schema import NOT_SUPPORTED, FieldIssue, Model
from gateway.config.snapshot import FaultFilter

# gRPC status codes by name (grpc/doc/statuscodes.md); OK is no fault.
GRPC_CODES: dict[str, int] = {
    "CANCELLED": 1,
    "UNKNOWN": 2,
    "INVALID_ARGUMENT": 3,
    "DEADLINE_EXCEEDED": 4,
    "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6,
    "PERMISSION_DENIED": 7,
    "RESOURCE_EXHAUSTED": 8,
    "FAILED_PRECONDITION": 9,
    "ABORTED": 10,
    "OUT_OF_RANGE": 11,
    "UNIMPLEMENTED": 12,
    "INTERNAL": 13,
    "UNAVAILABLE": 14,
    "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
GrpcStatusName = Literal[
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
]
_DEPRECATED_PERCENT = f"{NOT_SUPPORTED} (deprecated in Istio); use percentage: {{value: N}}"


class PercentSpec(Model, frozen=True, kw_only=True):
    value: Annotated[float, msgspec.Meta(ge=0, le=100)]


class DelaySpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {
        "exponentialDelay": f"{NOT_SUPPORTED}; use fixedDelay",
        "percent": _DEPRECATED_PERCENT,
    }

    fixed_delay: str
    percentage: PercentSpec | None = None


class AbortSpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {
        "http2Error": f"{NOT_SUPPORTED}; use httpStatus or grpcStatus",
        "percent": _DEPRECATED_PERCENT,
    }

    http_status: Annotated[int, msgspec.Meta(ge=200, le=599)] | None = None
    grpc_status: GrpcStatusName | None = None
    percentage: PercentSpec | None = None


class FaultSpec(Model, frozen=True, kw_only=True):
    delay: DelaySpec | None = None
    abort: AbortSpec | None = None


class Fault(Object, frozen=True, kw_only=True):
    kind_name = "Fault"
    api_versions = (f"{ISTHMUS_GROUP}/v1alpha1",)

    spec: FaultSpec

    def check(self) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        spec = self.spec
        if spec.delay is None and spec.abort is None:
            issues.append(("spec", "set delay, abort or both"))
        if spec.delay is not None:
            problem = duration_problem(spec.delay.fixed_delay)
            if problem:
                issues.append(("spec.delay.fixedDelay", problem))
        abort = spec.abort
        if abort is not None:
            if abort.http_status is None and abort.grpc_status is None:
                issues.append(("spec.abort", "set httpStatus or grpcStatus"))
            elif abort.http_status is not None and abort.grpc_status is not None:
                issues.append(("spec.abort.grpcStatus", "must not be set with httpStatus"))
        return issues

    def filter(self) -> FaultFilter:
        delay, abort = self.spec.delay, self.spec.abort
        return FaultFilter(
            name=f"{self.namespace}/{self.name}",
            delay_s=seconds(delay.fixed_delay) if delay else 0.0,
            delay_percent=_percent(delay.percentage) if delay else 0.0,
            abort_http_status=abort.http_status if abort else None,
            abort_grpc_status=(
                GRPC_CODES[abort.grpc_status] if abort and abort.grpc_status else None
            ),
            abort_percent=_percent(abort.percentage) if abort else 0.0,
        )


def _percent(spec: PercentSpec | None) -> float:
    return 0.0 if spec is None else float(spec.value)
