"""Resolve references between objects, honouring ReferenceGrants, and record the failures.

Used by ``gateway.config.translate`` (``backendRefs``, mirror backends, ExtensionRef filters),
``gateway.config.listeners`` (``certificateRefs``) and ``gateway.config.attach``
(``parentRefs``). A reference into another namespace needs a ReferenceGrant in the target
namespace that names the referring kind and namespace. A reference that cannot be followed is
not a load error: it becomes a snapshot ``UnresolvedRef`` (and a backend of ``""``, which the
data plane answers with 500), as the Gateway API specifies.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from gateway.config.clusters import cluster_name
from gateway.config.kinds import Fault, Gateway, Object, RateLimit, ReferenceGrant, Secret, Service
from gateway.config.kinds.gateway import SecretRef
from gateway.config.kinds.meta import GATEWAY_GROUP
from gateway.config.kinds.route_parts import BackendRef, ExtensionRefSpec, MirrorBackendRef
from gateway.config.kinds.secret import tls_pair
from gateway.config.resources import Resources, key_of
from gateway.config.snapshot import CertificatePair, UnresolvedRef


@dataclass(slots=True)
class Resolver:
    services: dict[tuple[str, str], Service]
    secrets: dict[tuple[str, str], Secret]
    grants: dict[str, list[ReferenceGrant]]
    unresolved: list[UnresolvedRef] = field(default_factory=list)
    # ExtensionRef targets (RateLimit, Fault) by (kind, namespace, name).
    extensions: dict[tuple[str, str, str], Object] = field(default_factory=dict)

    @classmethod
    def of(cls, resources: Resources) -> Resolver:
        services, secrets, grants, extensions = resources.derived("refs.Resolver", _indexes)
        # Shared between the resolvers of one Resources: nothing here writes to them.
        return cls(services=services, secrets=secrets, grants=grants, extensions=extensions)

    def note(self, source: Object, path: str, target: str, reason: str) -> None:
        self.unresolved.append(UnresolvedRef(str(key_of(source)), path, target, reason))

    def permitted(self, source: Object, to_kind: str, to_namespace: str, to_name: str) -> bool:
        """Whether ``source`` may refer to the core object ``to_kind to_namespace/to_name``."""
        if source.namespace == to_namespace:
            return True
        return any(
            grant.allows(GATEWAY_GROUP, source.kind_name, source.namespace, "", to_kind, to_name)
            for grant in self.grants.get(to_namespace, ())
        )

    def backend(self, source: Object, path: str, ref: BackendRef | MirrorBackendRef) -> str:
        """The cluster name for a Service backend, or ``""`` if it cannot be resolved."""
        namespace = ref.namespace or source.namespace
        target = f"Service {namespace}/{ref.name}:{ref.port}"
        if not self.permitted(source, "Service", namespace, ref.name):
            self.note(source, path, target, _not_granted(namespace))
            return ""
        service = self.services.get((namespace, ref.name))
        if service is None:
            self.note(source, path, target, "Service not found")
            return ""
        if ref.port is None or all(p.port != ref.port for p in service.spec.ports):
            self.note(source, path, target, f"Service has no port {ref.port}")
            return ""
        return cluster_name(namespace, ref.name, ref.port)

    def extension(self, source: Object, path: str, ref: ExtensionRefSpec) -> Object | None:
        """The object an ExtensionRef filter names, always in the route's namespace."""
        found = self.extensions.get((ref.kind, source.namespace, ref.name))
        if found is None:
            target = f"{ref.kind} {source.namespace}/{ref.name}"
            self.note(source, path, target, f"{ref.kind} not found")
        return found

    def certificate(
        self, gateway: Gateway, path: str, ref: SecretRef, hostname: str | None
    ) -> CertificatePair | None:
        namespace = ref.namespace or gateway.namespace
        target = f"Secret {namespace}/{ref.name}"
        if not self.permitted(gateway, "Secret", namespace, ref.name):
            self.note(gateway, path, target, _not_granted(namespace))
            return None
        secret = self.secrets.get((namespace, ref.name))
        if secret is None:
            self.note(gateway, path, target, "Secret not found")
            return None
        cert_pem, key_pem = tls_pair(secret)
        return CertificatePair(
            secret=f"{namespace}/{ref.name}", hostname=hostname, cert_pem=cert_pem, key_pem=key_pem
        )


def _not_granted(namespace: str) -> str:
    return f"cross-namespace reference not permitted by any ReferenceGrant in {namespace}"


_Indexes = tuple[
    dict[tuple[str, str], Service],
    dict[tuple[str, str], Secret],
    dict[str, list[ReferenceGrant]],
    dict[tuple[str, str, str], Object],
]


def _indexes(resources: Resources) -> _Indexes:
    grants: dict[str, list[ReferenceGrant]] = defaultdict(list)
    for grant in resources.of_kind(ReferenceGrant):
        grants[grant.namespace].append(grant)
    return (
        {(s.namespace, s.name): s for s in resources.of_kind(Service)},
        {(s.namespace, s.name): s for s in resources.of_kind(Secret)},
        dict(grants),
        {
            (o.kind_name, o.namespace, o.name): o
            for o in (*resources.of_kind(RateLimit), *resources.of_kind(Fault))
        },
    )
