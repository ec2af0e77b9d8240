"""Gateway API ``TLSRoute`` (v1alpha2, v1alpha3): SNI-routed TLS passthrough.

Validated by the loader; ``gateway.config.translate`` compiles each route into a snapshot
``TLSRouteConfig`` and ``gateway.config.attach`` attaches it to TLS Passthrough listeners.
A route has one rule whose ``backendRefs`` share the connections by weight.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from gateway.config.kinds.meta import GATEWAY_GROUP, Hostname, Object, SectionName
from gateway.config.kinds.route_parts import (
    BackendRef,
    ParentRef,
    backend_ref_issues,
    hostname_issues,
    parent_ref_issues,
)
from gateway.config.schema import NOT_SUPPORTED, FieldIssue, Model, item, join

V1ALPHA3 = f"{GATEWAY_GROUP}/v1alpha3"


class TLSRouteRuleSpec(Model, frozen=True, kw_only=True):
    backend_refs: Annotated[tuple[BackendRef, ...], msgspec.Meta(min_length=1, max_length=16)]
    name: SectionName | None = None


class TLSRouteSpec(Model, frozen=True, kw_only=True):
    rules: Annotated[tuple[TLSRouteRuleSpec, ...], msgspec.Meta(min_length=1, max_length=16)]
    parent_refs: Annotated[tuple[ParentRef, ...], msgspec.Meta(max_length=32)] = ()
    hostnames: Annotated[tuple[Hostname, ...], msgspec.Meta(max_length=16)] = ()


class TLSRoute(Object, frozen=True, kw_only=True):
    kind_name = "TLSRoute"
    api_versions = (f"{GATEWAY_GROUP}/v1alpha2", V1ALPHA3)

    spec: TLSRouteSpec

    def check(self) -> list[FieldIssue]:
        issues = parent_ref_issues(self.spec.parent_refs) + hostname_issues(self.spec.hostnames)
        if self.api_version == V1ALPHA3 and not self.spec.hostnames:
            issues.append(("spec.hostnames", f"at least one is required in {V1ALPHA3}"))
        if len(self.spec.rules) > 1:
            issues.append(
                (
                    item("spec.rules", 1),
                    f"several rules are {NOT_SUPPORTED}; put all backendRefs in one rule",
                )
            )
        for i, rule in enumerate(self.spec.rules):
            for j, ref in enumerate(rule.backend_refs):
                path = item(join(item("spec.rules", i), "backendRefs"), j)
                issues.extend(backend_ref_issues(path, ref))
        return issues
