"""Which DestinationRule applies to each Service, and what it changes on its clusters.

``gateway.config.compile`` builds :class:`TrafficPolicies` from the loaded Services and
DestinationRules and the proxy's namespace; ``gateway.config.clusters`` calls
:meth:`TrafficPolicies.apply` on every cluster it builds. Istio's rules:

- ``host`` is resolved relative to the rule's namespace: a name without a dot (``reviews``)
  means ``reviews.<rule namespace>.svc.cluster.local``; anything with a dot is taken as fully
  qualified, so ``reviews.prod`` matches no Service (Istio does the same); ``*.prod.svc.
  cluster.local`` and ``*`` are wildcards.
- For a Service, rules are looked for in the proxy's namespace (``ProxySettings`` ``node.
  namespace``), then in the Service's namespace, then in the root namespace
  ``istio-system``; the first namespace with a matching rule wins. Rules elsewhere do not
  apply. Within that namespace the most specific host wins (exact, then the longest
  wildcard).
- Several rules for the same host in one namespace are not merged field by field: the oldest
  (``creationTimestamp``, then name; no timestamp counts as oldest) that has a
  ``trafficPolicy`` supplies it, as Istio does.
- ``portLevelSettings`` for a Service port replace ``loadBalancer``, ``connectionPool``,
  ``outlierDetection`` and ``tls`` each as a whole. ``tls`` becomes ``Cluster.tls`` (None for
  DISABLE).

A rule that applies to no Service is not an error (Istio ignores it), nor is a newer rule
shadowed by an older one; both are recorded as snapshot ``UnresolvedRef``s, shown in
``/config``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgspec

from gateway.config.kinds.core import Service
from gateway.config.kinds.destinationrule import DestinationRule
from gateway.config.resources import ObjectKey, key_of
from gateway.config.snapshot import Cluster, UnresolvedRef

DOMAIN_SUFFIX = "cluster.local"
ROOT_NAMESPACE = "istio-system"
_HOST_FIELD = "spec.host"


def resolve_host(host: str, namespace: str) -> str:
    """Istio's short-name rule: only a name without any dot is expanded."""
    if host == "*" or "." in host:
        return host
    return f"{host}.{namespace}.svc.{DOMAIN_SUFFIX}"


def service_host(service: Service) -> str:
    return f"{service.name}.{service.namespace}.svc.{DOMAIN_SUFFIX}"


def host_matches(pattern: str, host: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return pattern == host


def _specificity(pattern: str) -> tuple[int, int]:
    return (0 if pattern.startswith("*") else 1, len(pattern))


def _host(rule: DestinationRule) -> str:
    return resolve_host(rule.spec.host, rule.namespace)


def _winning_group(
    host: str, order: tuple[str, ...], by_namespace: dict[str, list[DestinationRule]]
) -> list[DestinationRule]:
    """The rules, oldest first, for the most specific host pattern matching ``host`` in the
    first namespace of ``order`` that has any; empty when none has."""
    for namespace in order:
        candidates = [r for r in by_namespace.get(namespace, ()) if host_matches(_host(r), host)]
        if candidates:
            best = max((_host(r) for r in candidates), key=_specificity)
            return [r for r in candidates if _host(r) == best]
    return []


def _age(rule: DestinationRule) -> tuple[str, str, str]:
    meta = rule.metadata
    return (meta.creation_timestamp, meta.name, meta.namespace)


@dataclass(slots=True)
class TrafficPolicies:
    """The rule chosen for each Service (by namespace and name) and the rules left over."""

    chosen: dict[tuple[str, str], DestinationRule] = field(default_factory=dict)
    unresolved: list[UnresolvedRef] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        services: Iterable[Service],
        rules: Iterable[DestinationRule],
        proxy_namespace: str,
    ) -> TrafficPolicies:
        ordered = sorted(rules, key=_age)
        if not ordered:
            return cls()  # no rule: nothing to choose for any Service
        by_namespace: dict[str, list[DestinationRule]] = defaultdict(list)
        for rule in ordered:
            by_namespace[rule.namespace].append(rule)
        policies = cls()
        applied: set[ObjectKey] = set()
        lost_to: dict[ObjectKey, DestinationRule] = {}  # shadowed or outranked, by whom
        not_consulted: set[ObjectKey] = set()
        for service in services:
            host = service_host(service)
            order = tuple(dict.fromkeys((proxy_namespace, service.namespace, ROOT_NAMESPACE)))
            group = _winning_group(host, order, by_namespace)
            if group:
                with_policy = [r for r in group if r.spec.traffic_policy is not None]
                winner = with_policy[0] if with_policy else group[0]
                policies.chosen[(service.namespace, service.name)] = winner
                applied.update(key_of(r) for r in group if r.spec.traffic_policy is None)
                applied.add(key_of(winner))
            for rule in ordered:
                key = key_of(rule)
                if key in applied or not host_matches(_host(rule), host):
                    continue
                if rule.namespace in order and group:
                    lost_to.setdefault(key, winner)
                else:
                    not_consulted.add(key)
        for rule in ordered:
            key = key_of(rule)
            if key not in applied:
                policies.unresolved.append(
                    _note(rule, lost_to.get(key), key in not_consulted, proxy_namespace)
                )
        return policies

    def sets_tls(self, service: Service, port: int) -> bool:
        """Whether the chosen rule says anything about TLS for Service port ``port``."""
        rule = self.chosen.get((service.namespace, service.name))
        if rule is None or rule.spec.traffic_policy is None:
            return False
        return rule.spec.traffic_policy.for_port(port).tls is not None

    def apply(self, service: Service, port: int, cluster: Cluster) -> Cluster:
        """``cluster`` (Service port ``port``) with the chosen rule's policy applied."""
        rule = self.chosen.get((service.namespace, service.name))
        if rule is None or rule.spec.traffic_policy is None:
            return cluster
        parts = rule.spec.traffic_policy.for_port(port)
        changes: dict[str, object] = {}
        if parts.connection_pool is not None:
            changes["pool"] = parts.connection_pool.pool()
        if parts.outlier_detection is not None:
            changes["outlier"] = parts.outlier_detection.outlier()
        if parts.tls is not None:
            changes["tls"] = parts.tls.upstream_tls()
        if (lb := parts.load_balancer) is not None:
            if (policy := lb.lb_policy()) is not None:
                changes["lb_policy"] = policy
            if lb.consistent_hash is not None:
                changes["consistent_hash"] = lb.consistent_hash.consistent_hash()
            if lb.locality_lb_setting is not None:
                changes["locality_lb"] = lb.locality_lb_setting.locality_lb()
        return msgspec.structs.replace(cluster, **changes)


def _note(
    rule: DestinationRule,
    winner: DestinationRule | None,
    not_consulted: bool,
    proxy_namespace: str,
) -> UnresolvedRef:
    host = _host(rule)
    source = str(key_of(rule))
    if winner is not None and _host(winner) == host and winner.namespace == rule.namespace:
        return UnresolvedRef(
            source,
            "spec.trafficPolicy",
            f"host {host}",
            f"shadowed by the older {key_of(winner)}: Istio uses the trafficPolicy of the "
            "oldest rule for a host",
        )
    if winner is not None:
        reason = f"{key_of(winner)} takes precedence (its namespace or host is closer)"
    elif not_consulted:
        reason = (
            f"not read: for a Service, a proxy in namespace {proxy_namespace} reads rules "
            f"from its own namespace, the Service's and {ROOT_NAMESPACE} only"
        )
    else:
        reason = "no Service has this host; the rule is ignored"
        if not host.startswith("*") and not host.endswith(f".svc.{DOMAIN_SUFFIX}"):
            reason += (
                " (a host with a dot is taken as fully qualified: write "
                f"<name>.<namespace>.svc.{DOMAIN_SUFFIX} or the bare name)"
            )
    return UnresolvedRef(source, _HOST_FIELD, f"host {host}", reason)
