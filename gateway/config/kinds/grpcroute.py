"""Gateway API ``GRPCRoute`` (v1): gRPC method and header matches, filters and backends.

Validated by the loader; ``gateway.config.translate`` compiles the method matches into path
matches on ``/package.Service/Method`` and the route into a snapshot ``HTTPRouteConfig`` of
kind ``GRPCRoute``. Filters: RequestHeaderModifier, ResponseHeaderModifier, RequestMirror
and ExtensionRef (an ``isthmus.dev`` RateLimit or Fault). ``sessionPersistence`` is rejected.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

import msgspec

from gateway.config.kinds.httproute import (
    HTTPHeaderMatchSpec,
    StringMatch,
    regex_issues,
    string_match_issues,
)
from gateway.config.kinds.meta import GATEWAY_GROUP, Hostname, Object, SectionName
from gateway.config.kinds.route_parts import (
    BackendRef,
    ExtensionRefSpec,
    HeaderModifierSpec,
    ParentRef,
    RequestMirrorSpec,
    backend_ref_issues,
    filter_count_issues,
    filter_shape_issues,
    header_modifier_issues,
    hostname_issues,
    mirror_issues,
    parent_ref_issues,
)
from gateway.config.schema import NOT_SUPPORTED, FieldIssue, Model, item, join

_SERVICE = re.compile(r"^\.?[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$")
_METHOD = re.compile(r"^[A-Za-z_][A-Za-z_0-9]*$")


class GRPCMethodMatchSpec(Model, frozen=True, kw_only=True):
    type: StringMatch = "Exact"
    service: Annotated[str, msgspec.Meta(max_length=1024)] | None = None
    method: Annotated[str, msgspec.Meta(max_length=1024)] | None = None


class GRPCRouteMatchSpec(Model, frozen=True, kw_only=True):
    method: GRPCMethodMatchSpec | None = None
    headers: Annotated[tuple[HTTPHeaderMatchSpec, ...], msgspec.Meta(max_length=16)] = ()


class GRPCRouteFilterSpec(Model, frozen=True, kw_only=True):
    type: Literal[
        "RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror", "ExtensionRef"
    ]
    request_header_modifier: HeaderModifierSpec | None = None
    response_header_modifier: HeaderModifierSpec | None = None
    request_mirror: RequestMirrorSpec | None = None
    extension_ref: ExtensionRefSpec | None = None


class GRPCRouteRuleSpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {"sessionPersistence": NOT_SUPPORTED}

    name: SectionName | None = None
    matches: Annotated[tuple[GRPCRouteMatchSpec, ...], msgspec.Meta(max_length=64)] = ()
    filters: Annotated[tuple[GRPCRouteFilterSpec, ...], msgspec.Meta(max_length=16)] = ()
    backend_refs: Annotated[tuple[BackendRef, ...], msgspec.Meta(max_length=16)] = ()


class GRPCRouteSpec(Model, frozen=True, kw_only=True):
    parent_refs: Annotated[tuple[ParentRef, ...], msgspec.Meta(max_length=32)] = ()
    hostnames: Annotated[tuple[Hostname, ...], msgspec.Meta(max_length=16)] = ()
    rules: Annotated[tuple[GRPCRouteRuleSpec, ...], msgspec.Meta(max_length=16)] = (
        GRPCRouteRuleSpec(),
    )


class GRPCRoute(Object, frozen=True, kw_only=True):
    kind_name = "GRPCRoute"
    api_versions = (f"{GATEWAY_GROUP}/v1",)

    spec: GRPCRouteSpec = GRPCRouteSpec()

    def check(self) -> list[FieldIssue]:
        issues = parent_ref_issues(self.spec.parent_refs) + hostname_issues(self.spec.hostnames)
        for i, rule in enumerate(self.spec.rules):
            issues.extend(_rule_issues(item("spec.rules", i), rule))
        return issues


def _rule_issues(path: str, rule: GRPCRouteRuleSpec) -> list[FieldIssue]:
    issues: list[FieldIssue] = []
    for i, match in enumerate(rule.matches):
        here = item(join(path, "matches"), i)
        if match.method is not None:
            issues.extend(_method_issues(join(here, "method"), match.method))
        issues.extend(string_match_issues(join(here, "headers"), match.headers, fold_case=True))
    filters_path = join(path, "filters")
    for i, spec in enumerate(rule.filters):
        here = item(filters_path, i)
        issues.extend(filter_shape_issues(here, spec, spec.type))
        if spec.request_header_modifier is not None:
            issues.extend(
                header_modifier_issues(
                    join(here, "requestHeaderModifier"), spec.request_header_modifier
                )
            )
        if spec.response_header_modifier is not None:
            issues.extend(
                header_modifier_issues(
                    join(here, "responseHeaderModifier"), spec.response_header_modifier
                )
            )
        if spec.request_mirror is not None:
            issues.extend(mirror_issues(join(here, "requestMirror"), spec.request_mirror))
    issues.extend(filter_count_issues(filters_path, [f.type for f in rule.filters]))
    for i, ref in enumerate(rule.backend_refs):
        issues.extend(backend_ref_issues(item(join(path, "backendRefs"), i), ref))
    return issues


def _method_issues(path: str, match: GRPCMethodMatchSpec) -> list[FieldIssue]:
    if match.service is None and match.method is None:
        return [(path, "set service, method or both")]
    issues: list[FieldIssue] = []
    for field, value, pattern in (
        ("service", match.service, _SERVICE),
        ("method", match.method, _METHOD),
    ):
        if value is None:
            continue
        if match.type == "RegularExpression":
            issues.extend(regex_issues(join(path, field), value))
        elif not pattern.match(value):
            issues.append((join(path, field), f'"{value}" is not a valid gRPC {field} name'))
    return issues
