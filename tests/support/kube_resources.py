"""The resource types the Kubernetes API double serves, and how their URLs name them.

Used by :mod:`tests.support.kube_store` (keys, kinds, list kinds) and
:mod:`tests.support.kube_http` (``/api/v1/...`` and ``/apis/<group>/<version>/...`` paths).
A :class:`ResourceType` is ``(group, version, plural)`` plus its ``kind``, whether it is namespaced,
whether it is a built-in type (typed list items carry no ``kind``/``apiVersion``) and whether it
has a ``status`` subresource (writes to the main resource keep the stored status).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResourceType:
    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    builtin: bool = False
    status_subresource: bool = True
    field_labels: tuple[str, ...] = ()  # field selectors beyond metadata.name/namespace
    return_deleted_object: bool = True  # DELETE answers the object, else a Success Status

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified(self) -> str:
        """``services`` or ``endpointslices.discovery.k8s.io`` (as in Status messages)."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def gvr(self) -> tuple[str, str, str]:
        return (self.group, self.version, self.plural)


def _core(
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    status_subresource: bool = True,
    field_labels: tuple[str, ...] = (),
    return_deleted_object: bool = True,
) -> ResourceType:
    return ResourceType(
        "",
        "v1",
        plural,
        kind,
        namespaced=namespaced,
        builtin=True,
        status_subresource=status_subresource,
        field_labels=field_labels,
        return_deleted_object=return_deleted_object,
    )


def _crd(group: str, version: str, plural: str, kind: str) -> ResourceType:
    return ResourceType(group, version, plural, kind)


DEFAULT_RESOURCES: tuple[ResourceType, ...] = (
    _core(
        "namespaces",
        "Namespace",
        namespaced=False,
        field_labels=("status.phase",),
        return_deleted_object=False,
    ),
    _core("services", "Service"),
    _core(
        "pods",
        "Pod",
        field_labels=("spec.nodeName", "spec.serviceAccountName", "status.phase", "status.podIP"),
    ),
    _core(
        "secrets",
        "Secret",
        status_subresource=False,
        field_labels=("type",),
        return_deleted_object=False,
    ),
    _core("configmaps", "ConfigMap", status_subresource=False, return_deleted_object=False),
    _core("serviceaccounts", "ServiceAccount", status_subresource=False),
    ResourceType(
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        builtin=True,
        status_subresource=False,
        return_deleted_object=False,
    ),
    _crd("multicluster.x-k8s.io", "v1alpha1", "serviceexports", "ServiceExport"),
    _crd("multicluster.x-k8s.io", "v1alpha1", "serviceimports", "ServiceImport"),
    _crd("gateway.networking.k8s.io", "v1", "gateways", "Gateway"),
    _crd("gateway.networking.k8s.io", "v1", "httproutes", "HTTPRoute"),
    _crd("gateway.networking.k8s.io", "v1", "grpcroutes", "GRPCRoute"),
    _crd("gateway.networking.k8s.io", "v1alpha2", "tlsroutes", "TLSRoute"),
    _crd("networking.istio.io", "v1", "destinationrules", "DestinationRule"),
    _crd("security.istio.io", "v1", "peerauthentications", "PeerAuthentication"),
    _crd("security.istio.io", "v1", "authorizationpolicies", "AuthorizationPolicy"),
    _crd("security.istio.io", "v1", "requestauthentications", "RequestAuthentication"),
    _crd("isthmus.dev", "v1alpha1", "ratelimits", "RateLimit"),
    _crd("isthmus.dev", "v1alpha1", "faults", "Fault"),
    _crd("isthmus.dev", "v1alpha1", "proxysettings", "ProxySettings"),
)


class ResourceRegistry:
    """Resource types by ``(group, version, plural)`` and by ``(apiVersion, kind)``."""

    def __init__(self, types: tuple[ResourceType, ...] = DEFAULT_RESOURCES) -> None:
        self._by_gvr: dict[tuple[str, str, str], ResourceType] = {}
        self._by_kind: dict[tuple[str, str], ResourceType] = {}
        for rt in types:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._by_gvr[rt.gvr] = rt
        self._by_kind[(rt.api_version, rt.kind)] = rt

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_gvr.get((group, version, plural))

    def for_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((api_version, kind))

    def known_group_version(self, group: str, version: str) -> bool:
        return any(g == group and v == version for g, v, _ in self._by_gvr)

    def all(self) -> list[ResourceType]:
        return list(self._by_gvr.values())
