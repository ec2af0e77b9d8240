"""Gateway API ``GatewayClass``, ``Gateway`` and ``ReferenceGrant``.

Validated by the loader. ``gateway.config.listeners`` turns each Gateway listener into a
snapshot ``Listener``; ``gateway.config.refs`` consults ReferenceGrants for cross-namespace
``backendRefs`` and ``certificateRefs``. GatewayClass objects are validated and otherwise
ignored: isthmus programs every Gateway it is given.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated, Literal

import msgspec

from gateway.config.kinds.meta import (
    GATEWAY_GROUP,
    Hostname,
    LabelName,
    Name,
    Object,
    Port,
    SectionName,
    hostname_issue,
)
from gateway.config.schema import NOT_SUPPORTED, FieldIssue, Model, item, join
from gateway.config.snapshot import ListenerProtocol

GATEWAY_VERSIONS = (f"{GATEWAY_GROUP}/v1", f"{GATEWAY_GROUP}/v1beta1")
ROUTE_KINDS_BY_PROTOCOL: dict[str, tuple[str, ...]] = {
    "HTTP": ("HTTPRoute", "GRPCRoute"),
    "HTTPS": ("HTTPRoute", "GRPCRoute"),
    "TLS": ("TLSRoute",),
}


class GatewayClassSpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {"parametersRef": NOT_SUPPORTED}

    controller_name: str
    description: str | None = None


class GatewayClass(Object, frozen=True, kw_only=True):
    kind_name = "GatewayClass"
    api_versions = GATEWAY_VERSIONS
    namespaced = False

    spec: GatewayClassSpec


class SecretRef(Model, frozen=True, kw_only=True):
    name: Name
    group: str = ""
    kind: str = "Secret"
    namespace: LabelName | None = None


class ListenerTLS(Model, frozen=True, kw_only=True):
    unsupported_fields = {"options": NOT_SUPPORTED, "frontendValidation": NOT_SUPPORTED}

    mode: Literal["Terminate", "Passthrough"] = "Terminate"
    certificate_refs: Annotated[tuple[SecretRef, ...], msgspec.Meta(max_length=64)] = ()


class RouteNamespaces(Model, frozen=True, kw_only=True):
    unsupported_values = {"from": ("Selector",)}
    unsupported_fields = {"selector": NOT_SUPPORTED}

    from_: Literal["All", "Same", "Selector"] = msgspec.field(default="Same", name="from")


class RouteGroupKind(Model, frozen=True, kw_only=True):
    kind: str
    group: str = GATEWAY_GROUP


class AllowedRoutes(Model, frozen=True, kw_only=True):
    namespaces: RouteNamespaces = RouteNamespaces()
    kinds: tuple[RouteGroupKind, ...] = ()


class GatewayListener(Model, frozen=True, kw_only=True):
    unsupported_values = {"protocol": ("TCP", "UDP")}

    name: SectionName
    port: Port
    protocol: Literal["HTTP", "HTTPS", "TLS", "TCP", "UDP"]
    hostname: Hostname | None = None
    tls: ListenerTLS | None = None
    allowed_routes: AllowedRoutes = AllowedRoutes()

    @property
    def listener_protocol(self) -> ListenerProtocol:
        return "TLS" if self.protocol == "TLS" else "HTTPS" if self.protocol == "HTTPS" else "HTTP"

    def route_kinds(self) -> tuple[str, ...]:
        """The route kinds this listener accepts."""
        allowed = ROUTE_KINDS_BY_PROTOCOL[self.listener_protocol]
        if not self.allowed_routes.kinds:
            return allowed
        return tuple(k.kind for k in self.allowed_routes.kinds if k.kind in allowed)


class GatewayAddress(Model, frozen=True, kw_only=True):
    unsupported_values = {"type": ("Hostname", "NamedAddress")}

    value: str
    type: Literal["IPAddress", "Hostname", "NamedAddress"] = "IPAddress"


class GatewaySpec(Model, frozen=True, kw_only=True):
    unsupported_fields = {
        "infrastructure": NOT_SUPPORTED,
        "backendTLS": NOT_SUPPORTED,
        "allowedListeners": NOT_SUPPORTED,
        "tls": NOT_SUPPORTED,
    }

    gateway_class_name: Name
    listeners: Annotated[tuple[GatewayListener, ...], msgspec.Meta(min_length=1, max_length=64)]
    addresses: tuple[GatewayAddress, ...] = ()


class Gateway(Object, frozen=True, kw_only=True):
    kind_name = "Gateway"
    api_versions = GATEWAY_VERSIONS

    spec: GatewaySpec

    @property
    def bind_addresses(self) -> tuple[str, ...]:
        return tuple(a.value for a in self.spec.addresses) or ("0.0.0.0",)

    def check(self) -> list[FieldIssue]:
        issues: list[FieldIssue] = []
        for i, address in enumerate(self.spec.addresses):
            try:
                ipaddress.ip_address(address.value)
            except ValueError:
                here = join(item("spec.addresses", i), "value")
                issues.append((here, f'"{address.value}" is not an IP address'))
        names: set[str] = set()
        for i, listener in enumerate(self.spec.listeners):
            here = item("spec.listeners", i)
            if listener.name in names:
                issues.append((join(here, "name"), f'duplicate listener name "{listener.name}"'))
            names.add(listener.name)
            issues.extend(_listener_issues(here, listener))
        return issues


def _listener_issues(path: str, listener: GatewayListener) -> list[FieldIssue]:
    issues: list[FieldIssue] = []
    if listener.hostname is not None:
        issue = hostname_issue(join(path, "hostname"), listener.hostname)
        if issue:
            issues.append(issue)
    tls_path = join(path, "tls")
    tls = listener.tls
    if listener.protocol == "HTTP" and tls is not None:
        issues.append((tls_path, "must not be set on an HTTP listener"))
    elif listener.protocol in ("HTTPS", "TLS") and tls is None:
        issues.append((tls_path, f"required on an {listener.protocol} listener"))
    elif listener.protocol == "HTTPS" and tls is not None:
        if tls.mode != "Terminate":
            issues.append(
                (
                    join(tls_path, "mode"),
                    "HTTPS listeners terminate TLS; for Passthrough use protocol TLS",
                )
            )
        elif not tls.certificate_refs:
            issues.append((join(tls_path, "certificateRefs"), "at least one is required"))
    elif listener.protocol == "TLS" and tls is not None:
        if tls.mode != "Passthrough":
            issues.append(
                (
                    join(tls_path, "mode"),
                    "Terminate on a TLS listener is "
                    f"{NOT_SUPPORTED}; use protocol HTTPS, or mode Passthrough",
                )
            )
        elif tls.certificate_refs:
            issues.append(
                (
                    join(tls_path, "certificateRefs"),
                    "must be empty with mode Passthrough (the backend holds the key)",
                )
            )
    if tls is not None:
        for j, ref in enumerate(tls.certificate_refs):
            if ref.group != "" or ref.kind != "Secret":
                here = item(join(tls_path, "certificateRefs"), j)
                issues.append(
                    (
                        here,
                        f"{ref.group or 'core'}/{ref.kind} is {NOT_SUPPORTED}; reference a Secret",
                    )
                )
    accepted = ROUTE_KINDS_BY_PROTOCOL.get(listener.protocol, ())
    for j, kind in enumerate(listener.allowed_routes.kinds):
        here = item(join(join(path, "allowedRoutes"), "kinds"), j)
        if kind.group != GATEWAY_GROUP or kind.kind not in accepted:
            issues.append(
                (
                    here,
                    f"{kind.group}/{kind.kind} routes cannot attach to a "
                    f"{listener.protocol} listener (use {', '.join(accepted)})",
                )
            )
    return issues


class GrantFrom(Model, frozen=True, kw_only=True):
    group: str
    kind: str
    namespace: LabelName


class GrantTo(Model, frozen=True, kw_only=True):
    group: str
    kind: str
    name: Name | None = None


class ReferenceGrantSpec(Model, frozen=True, kw_only=True):
    from_: Annotated[tuple[GrantFrom, ...], msgspec.Meta(min_length=1, max_length=16)] = (
        msgspec.field(name="from")
    )
    to: Annotated[tuple[GrantTo, ...], msgspec.Meta(min_length=1, max_length=16)]


class ReferenceGrant(Object, frozen=True, kw_only=True):
    kind_name = "ReferenceGrant"
    api_versions = (f"{GATEWAY_GROUP}/v1beta1",)

    spec: ReferenceGrantSpec

    def allows(
        self, group: str, kind: str, namespace: str, to_group: str, to_kind: str, to_name: str
    ) -> bool:
        """Whether a ``group/kind`` in ``namespace`` may refer to ``to_name`` here."""
        sources = any(
            f.group == group and f.kind == kind and f.namespace == namespace
            for f in self.spec.from_
        )
        targets = any(
            t.group == to_group and t.kind == to_kind and t.name in (None, to_name)
            for t in self.spec.to
        )
        return sources and targets
