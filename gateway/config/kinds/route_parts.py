"""Pieces shared by HTTPRoute, GRPCRoute and TLSRoute: parentRefs, backendRefs and filters.

Used by the route kind modules (``httproute``, ``grpcroute``, ``tlsroute``) for their models
and their ``check`` methods; ``gateway.config.attach`` and ``gateway.config.translate`` read
the resulting values.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import msgspec

from gateway.config.kinds.meta import (
    GATEWAY_GROUP,
    ISTHMUS_GROUP,
    HeaderName,
    LabelName,
    Name,
    Port,
    SectionName,
    hostname_issue,
)
from gateway.config.schema import NOT_SUPPORTED, FieldIssue, Model, item, join

Weight = Annotated[int, msgspec.Meta(ge=0, le=1_000_000)]

# Filter type -> (attribute, wire name) of the field that configures it.
FILTER_FIELDS: dict[str, tuple[str, str]] = {
    "RequestHeaderModifier": ("request_header_modifier", "requestHeaderModifier"),
    "ResponseHeaderModifier": ("response_header_modifier", "responseHeaderModifier"),
    "RequestMirror": ("request_mirror", "requestMirror"),
    "RequestRedirect": ("request_redirect", "requestRedirect"),
    "URLRewrite": ("url_rewrite", "urlRewrite"),
    "ExtensionRef": ("extension_ref", "extensionRef"),
}
# The kinds an ExtensionRef filter may name, all in the isthmus.dev group.
EXTENSION_FILTER_KINDS = ("RateLimit", "Fault")


class ParentRef(Model, frozen=True, kw_only=True):
    name: Name
    group: str = GATEWAY_GROUP
    kind: str = "Gateway"
    namespace: LabelName | None = None
    section_name: SectionName | None = None
    port: Port | None = None


class BackendRef(Model, frozen=True, kw_only=True):
    """A weighted reference to a Service port."""

    unsupported_fields = {
        "filters": f"{NOT_SUPPORTED} (filters on a backendRef); put them on the rule",
    }

    name: Name
    group: str = ""
    kind: str = "Service"
    namespace: LabelName | None = None
    port: Port | None = None
    weight: Weight = 1


class MirrorBackendRef(Model, frozen=True, kw_only=True):
    name: Name
    group: str = ""
    kind: str = "Service"
    namespace: LabelName | None = None
    port: Port | None = None


class Fraction(Model, frozen=True, kw_only=True):
    numerator: Annotated[int, msgspec.Meta(ge=0)]
    denominator: Annotated[int, msgspec.Meta(ge=1)] = 100


class RequestMirrorSpec(Model, frozen=True, kw_only=True):
    backend_ref: MirrorBackendRef
    percent: Annotated[int, msgspec.Meta(ge=0, le=100)] | None = None
    fraction: Fraction | None = None

    @property
    def percent_value(self) -> float:
        if self.fraction is not None:
            return 100.0 * self.fraction.numerator / self.fraction.denominator
        return 100.0 if self.percent is None else float(self.percent)


class HTTPHeaderSpec(Model, frozen=True, kw_only=True):
    name: HeaderName
    value: Annotated[str, msgspec.Meta(max_length=4096)]


class HeaderModifierSpec(Model, frozen=True, kw_only=True):
    set: Annotated[tuple[HTTPHeaderSpec, ...], msgspec.Meta(max_length=16)] = ()
    add: Annotated[tuple[HTTPHeaderSpec, ...], msgspec.Meta(max_length=16)] = ()
    remove: Annotated[tuple[HeaderName, ...], msgspec.Meta(max_length=16)] = ()


class ExtensionRefSpec(Model, frozen=True, kw_only=True):
    group: str
    kind: str
    name: Name


def parent_ref_issues(refs: Iterable[ParentRef]) -> list[FieldIssue]:
    issues: list[FieldIssue] = []
    for i, ref in enumerate(refs):
        if ref.group != GATEWAY_GROUP or ref.kind != "Gateway":
            here = item("spec.parentRefs", i)
            issues.append(
                (
                    here,
                    f"parent {ref.group or 'core'}/{ref.kind} is {NOT_SUPPORTED}; "
                    "attach routes to a Gateway",
                )
            )
    return issues


def hostname_issues(hostnames: Iterable[str]) -> list[FieldIssue]:
    found = (hostname_issue(item("spec.hostnames", i), h) for i, h in enumerate(hostnames))
    return [issue for issue in found if issue is not None]


def backend_ref_issues(path: str, ref: BackendRef | MirrorBackendRef) -> list[FieldIssue]:
    if ref.group != "" or ref.kind != "Service":
        kind = f"{ref.group or 'core'}/{ref.kind}"
        return [(path, f"backend {kind} is {NOT_SUPPORTED}; reference a Service")]
    if ref.port is None:
        return [(join(path, "port"), "required when referencing a Service")]
    return []


def header_modifier_issues(path: str, modifier: HeaderModifierSpec) -> list[FieldIssue]:
    issues: list[FieldIssue] = []
    seen: set[str] = set()
    groups = (
        ("set", [h.name for h in modifier.set]),
        ("add", [h.name for h in modifier.add]),
        ("remove", list(modifier.remove)),
    )
    for field, names in groups:
        for i, name in enumerate(names):
            if name.lower() in seen:
                here = item(join(path, field), i)
                issues.append((here, f'header "{name}" appears more than once in this filter'))
            seen.add(name.lower())
    return issues


def mirror_issues(path: str, mirror: RequestMirrorSpec) -> list[FieldIssue]:
    issues = backend_ref_issues(join(path, "backendRef"), mirror.backend_ref)
    if mirror.percent is not None and mirror.fraction is not None:
        issues.append((path, "set percent or fraction, not both"))
    fraction = mirror.fraction
    if fraction is not None and fraction.numerator > fraction.denominator:
        issues.append((join(path, "fraction"), "numerator must not exceed denominator"))
    return issues


def filter_shape_issues(
    path: str, filter_spec: msgspec.Struct, filter_type: str
) -> list[FieldIssue]:
    """The field named by ``type`` must be set, and no other filter field may be."""
    issues: list[FieldIssue] = []
    for kind, (attr, wire) in FILTER_FIELDS.items():
        if not hasattr(filter_spec, attr):
            continue
        present = getattr(filter_spec, attr) is not None
        if kind == filter_type and not present:
            issues.append((join(path, wire), f"required when type is {filter_type}"))
        elif kind != filter_type and present:
            issues.append((join(path, wire), f"must not be set when type is {filter_type}"))
    ref = getattr(filter_spec, "extension_ref", None)
    if filter_type == "ExtensionRef" and isinstance(ref, ExtensionRefSpec):
        issues.extend(extension_ref_issues(join(path, "extensionRef"), ref))
    return issues


def extension_ref_issues(path: str, ref: ExtensionRefSpec) -> list[FieldIssue]:
    """Only the isthmus.dev filter kinds can be referenced (in the route's namespace)."""
    if ref.group == ISTHMUS_GROUP and ref.kind in EXTENSION_FILTER_KINDS:
        return []
    kinds = " or ".join(EXTENSION_FILTER_KINDS)
    return [
        (
            path,
            f"extension {ref.group or 'core'}/{ref.kind} is {NOT_SUPPORTED}; "
            f"reference an {ISTHMUS_GROUP} {kinds}",
        )
    ]


def filter_count_issues(path: str, types: list[str]) -> list[FieldIssue]:
    """Gateway API allows each of these filter types at most once per rule."""
    issues: list[FieldIssue] = []
    once = ("RequestHeaderModifier", "ResponseHeaderModifier", "RequestRedirect", "URLRewrite")
    for i, filter_type in enumerate(types):
        if filter_type in once and filter_type in types[:i]:
            issues.append((item(path, i), f"{filter_type} may appear only once in a rule"))
    if "RequestRedirect" in types and "URLRewrite" in types:
        issues.append((path, "RequestRedirect and URLRewrite cannot be used together"))
    return issues
