"""Where an Istio security policy applies: ``selector`` and ``targetRef``/``targetRefs``.

Shared by the ``AuthorizationPolicy`` and ``RequestAuthentication`` kinds (and validated with
Istio's rules by :func:`scope_issues`); ``gateway.config.security`` calls
:func:`policy_applies` to decide, for each Gateway listener of this proxy, whether a policy is
in force there.

Istio's scoping, which isthmus follows:

* ``targetRefs`` (or the older single ``targetRef``) names Gateways (group
  ``gateway.networking.k8s.io``, kind ``Gateway``) in the policy's own namespace; the policy
  then applies to those Gateways' listeners only, whatever the proxy's labels.
* Otherwise the policy's namespace decides: one in the root namespace (``istio-system``)
  applies to every workload of the mesh, one elsewhere to the workloads of its namespace
  (this proxy's ``ProxySettings`` ``node.namespace``).
* ``selector.matchLabels`` narrows that to workloads carrying every label (this proxy's
  ``node.labels``). An empty selector selects every workload.

At most one of ``selector``, ``targetRef`` and ``targetRefs`` may be set. A targetRef may
not name another namespace, and kinds other than Gateway (Service, ServiceEntry,
GatewayClass, which Istio knows for waypoints) are refused by name.
"""

from __future__ import annotations

from collections.abc import Sequence

from gateway.config.kinds.meta import GATEWAY_GROUP
from gateway.config.schema import NOT_SUPPORTED, FieldIssue, Model, item, join
from gateway.config.snapshot import Node

ROOT_NAMESPACE = "istio-system"


class WorkloadSelector(Model, frozen=True, kw_only=True):
    match_labels: dict[str, str] = {}


class PolicyTargetRef(Model, frozen=True, kw_only=True):
    group: str = ""
    kind: str
    name: str
    namespace: str | None = None


def scope_issues(
    path: str,
    namespace: str,
    selector: WorkloadSelector | None,
    target_ref: PolicyTargetRef | None,
    target_refs: Sequence[PolicyTargetRef],
) -> list[FieldIssue]:
    """Istio's validation of a policy's scope fields (``path`` is ``spec``)."""
    issues: list[FieldIssue] = []
    set_count = (selector is not None) + (target_ref is not None) + bool(target_refs)
    if set_count > 1:
        issues.append((path, "set only one of selector, targetRef and targetRefs"))
    if selector is not None:
        for key, value in selector.match_labels.items():
            here = join(join(join(path, "selector"), "matchLabels"), key)
            if not key:
                issues.append((here, "a label key must not be empty"))
            if "*" in key or "*" in value:
                issues.append((here, f'wildcards are not supported in a selector: "{key}={value}"'))
    refs = [(join(path, "targetRef"), target_ref)] if target_ref is not None else []
    refs += [(item(join(path, "targetRefs"), i), r) for i, r in enumerate(target_refs)]
    for here, ref in refs:
        if not ref.name:
            issues.append((join(here, "name"), "a targetRef must name its target"))
        if ref.namespace not in (None, "", namespace):
            issues.append(
                (
                    join(here, "namespace"),
                    "cross-namespace references are not supported: "
                    "a policy targets Gateways in its own namespace",
                )
            )
        if ref.kind != "Gateway" or ref.group != GATEWAY_GROUP:
            issues.append(
                (
                    here,
                    f"{ref.group or 'core'}/{ref.kind} is {NOT_SUPPORTED}: "
                    f"targetRefs must name a Gateway of group {GATEWAY_GROUP}",
                )
            )
    return issues


def target_gateways(
    namespace: str, target_ref: PolicyTargetRef | None, target_refs: Sequence[PolicyTargetRef]
) -> tuple[str, ...]:
    """The ``namespace/name`` of every Gateway the policy targets (empty: none named)."""
    refs = ([target_ref] if target_ref is not None else []) + list(target_refs)
    return tuple(sorted({f"{namespace}/{r.name}" for r in refs}))


def policy_applies(
    namespace: str,
    selector: WorkloadSelector | None,
    gateways: Sequence[str],
    node: Node,
    listener_gateway: str,
) -> bool:
    """Whether a policy in ``namespace`` applies to a listener of ``listener_gateway``
    (``namespace/name``) on the proxy ``node``."""
    if gateways:
        return listener_gateway in gateways
    if namespace not in (ROOT_NAMESPACE, node.namespace):
        return False
    if selector is None:
        return True
    labels = dict(node.labels)
    return all(labels.get(k) == v for k, v in selector.match_labels.items())
